// placeholder: the guest protocol
