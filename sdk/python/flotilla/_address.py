"""Where the manager's REST port is, and the caller's token: argument, environment, or the
local federation (`flotilla up`)."""

import json
import os

from .errors import FlotillaError


def federation_record_path(env=None):
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or "/tmp", ".local", "share")
    return os.path.join(base, "flotilla", "federation.json")


def insecure(env=None):
    """True in the development mode (`flotilla up --insecure`, FLOTILLA_INSECURE=1): the manager
    serves plain HTTP. Otherwise its HTTP port speaks only HTTPS."""
    env = os.environ if env is None else env
    if env.get("FLOTILLA_INSECURE") == "1":
        return True
    return bool(_record(env).get("insecure")) and not env.get("FLOTILLA_CA")


def resolve_ca(env=None):
    """Returns the CA certificate file the manager's certificate must chain to: $FLOTILLA_CA,
    then the local federation's; None where neither is known (the system's roots then apply)."""
    env = os.environ if env is None else env
    return env.get("FLOTILLA_CA") or _record(env).get("ca") or None


def resolve(address=None, env=None):
    """Returns "https://host:port" for the manager ("http://" in the development mode), or
    several comma-separated for the replicas of a highly available federation; raises
    FlotillaError if none is known. An address that names its scheme keeps it."""
    env = os.environ if env is None else env
    scheme = "http://" if insecure(env) else "https://"
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
    return ",".join(_url(a, scheme) for a in address.split(",") if a.strip())


def _url(address, scheme):
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = scheme + address
    return address


def _record(env):
    path = federation_record_path(env)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise FlotillaError("cannot read the local federation record %s: %s" % (path, e))


def resolve_token(token=None, env=None):
    """Returns the bearer token to send, or None in the development mode.

    Order: the argument, $FLOTILLA_TOKEN, the file $FLOTILLA_TOKEN_FILE, then the admin
    token of the local federation (`flotilla up` writes it to its state directory).
    """
    env = os.environ if env is None else env
    if token:
        return token.strip()
    if env.get("FLOTILLA_TOKEN"):
        return env["FLOTILLA_TOKEN"].strip()
    path = env.get("FLOTILLA_TOKEN_FILE")
    record = {} if path else _record(env)
    if not path and record.get("insecure"):
        return None
    path = path or record.get("token_file")
    if not path:
        return None
    try:
        with open(path) as f:
            return f.readline().strip() or None
    except OSError as e:
        raise FlotillaError("cannot read the token file %s: %s" % (path, e))
