"""Where the manager's REST port is: argument, $FLOTILLA_HTTP, or the local federation."""

import json
import os

from .errors import FlotillaError


def federation_record_path(env=None):
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or "/tmp", ".local", "share")
    return os.path.join(base, "flotilla", "federation.json")


def resolve(address=None, env=None):
    """Returns "http://host:port" for the manager; raises FlotillaError if none is known."""
    env = os.environ if env is None else env
    if not address:
        address = env.get("FLOTILLA_HTTP")
    if not address:
        path = federation_record_path(env)
        try:
            with open(path) as f:
                address = json.load(f).get("manager_http")
        except FileNotFoundError:
            address = None
        except (OSError, ValueError, AttributeError) as e:
            raise FlotillaError("cannot read the local federation record %s: %s" % (path, e))
        if not address:
            raise FlotillaError(
                "no Flotilla manager address: pass Client(address='host:port'), set "
                "FLOTILLA_HTTP=host:port, or start a local federation with `flotilla up` "
                "(it records the address in %s)" % path)
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = "http://" + address
    return address
