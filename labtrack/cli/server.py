"""`labtrack server` and `labtrack token`: run the tracking server, manage its tokens."""

from __future__ import annotations

import ipaddress
import os
import time

import click

from labtrack.cli import render
from labtrack.cli.main import _command, _json_option, _print_json, main
from labtrack.core.errors import InvalidInput
from labtrack.core.tokens import Role

__all__ = ["server", "token", "ui"]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command()
@click.option("--artifacts", "artifacts", metavar="LOCATION",
              help="Where artifact content goes: a directory or s3://bucket/prefix (default: the store's own).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host header the server answers to (repeatable; default: the loopback names on loopback, any "
                   "elsewhere — a reverse proxy sets it).")
@click.option("--proxy-artifacts", "proxy_artifacts", is_flag=True,
              help="With s3:// artifacts: pass content through the server instead of handing out presigned URLs "
                   "(for buckets clients must not reach).")
@click.option("--no-auth", "no_auth", is_flag=True,
              help="Answer without tokens (loopback only, unless --public-without-auth).")
@click.option("--public-without-auth", "public_without_auth", is_flag=True,
              help="With --no-auth on a non-loopback address: yes, anyone who reaches it may read and write.")
@_command
def server(artifacts: str | None, host: str, port: int, workers: int, allowed_hosts: tuple[str, ...],
           proxy_artifacts: bool, no_auth: bool, public_without_auth: bool) -> None:
    """Serve the store (--store, else the configured one) to a team over HTTP: clients set
    LABTRACK_STORE=http://HOST:PORT and LABTRACK_TOKEN, and nothing else changes. The web UI is at
    http://HOST:PORT/ (sign in with a token)."""
    _serve(artifacts=artifacts, host=host, port=port, workers=workers, allowed_hosts=allowed_hosts,
           proxy_artifacts=proxy_artifacts, no_auth=no_auth, public_without_auth=public_without_auth, what="server")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs `labtrack server` (with sign-in).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--open", "open_browser", is_flag=True, help="Open it in the browser.")
@_command
def ui(host: str, port: int, open_browser: bool) -> None:
    """The web UI over the store (--store, else the configured one, by default ./.labtrack), on this machine
    only: http://127.0.0.1:5000 without sign-in. For a team: `labtrack server`, which serves it with sign-in."""
    if not _is_loopback(host):
        raise InvalidInput(f"--host {host}: `labtrack ui` answers without sign-in, so it listens on loopback only; "
                           f"serve a team with `labtrack server --host {host}` (the UI asks for a token)", field="host")
    if open_browser:
        import threading
        import webbrowser

        address = f"[{host}]" if ":" in host else host
        threading.Timer(1.0, webbrowser.open, args=(f"http://{address}:{port}/",)).start()
    _serve(artifacts=None, host=host, port=port, workers=1, allowed_hosts=(), proxy_artifacts=False, no_auth=True,
           public_without_auth=False, what="ui")


def _serve(*, artifacts: str | None, host: str, port: int, workers: int, allowed_hosts: tuple[str, ...],
           proxy_artifacts: bool, no_auth: bool, public_without_auth: bool, what: str) -> None:
    from labtrack.server.app import SERVER_ENV
    from labtrack.store import scheme_of
    from labtrack.verbs import tracking

    location = tracking.store_location()
    if scheme_of(location) in ("http", "https") and what == "ui":
        raise InvalidInput(f"store {location} is a tracking server, which serves the web UI itself: open "
                           f"{location.rstrip('/')}/ in a browser (sign in with your token)", field="store")
    if scheme_of(location) in ("http", "https"):
        raise InvalidInput(f"store {location}: a server serves a database (a directory, sqlite:// or postgresql://), "
                           "not another server", field="store")
    loopback = _is_loopback(host)
    if no_auth and not loopback and not public_without_auth:
        raise InvalidInput(f"--no-auth on {host}: anyone who reaches this address could read and write every run; "
                           "add --public-without-auth if that is what you want, or leave auth on", field="no_auth")
    from labtrack.store import open_store

    store = open_store(location, artifacts=artifacts)  # an outdated schema stops here, naming the command
    try:
        bootstrap = None if no_auth or store.list_tokens() else store.create_token("admin", Role.ADMIN)
    finally:
        store.close()
    hosts = list(allowed_hosts) or (list(_LOOPBACK_NAMES) if loopback else [])
    os.environ[SERVER_ENV["store"]] = location
    os.environ[SERVER_ENV["artifacts"]] = artifacts or ""
    os.environ[SERVER_ENV["open_access"]] = "1" if no_auth else ""
    os.environ[SERVER_ENV["allowed_hosts"]] = ",".join(hosts)
    os.environ[SERVER_ENV["proxy_artifacts"]] = "1" if proxy_artifacts else ""
    address = f"[{host}]" if ":" in host else host
    url = f"http://{address}:{port}"
    if what == "ui":
        render.note(f"labtrack ui: {url}/ shows {location} (this machine only; Ctrl-C stops it)")
    else:
        render.note(f"labtrack server: {url} serves {location}" + (" WITHOUT AUTH" if no_auth else "")
                    + f"; the web UI is at {url}/")
    if bootstrap is not None:
        render.note("The store had no tokens: created an admin token (shown once, keep it):")
        click.echo(f"  export LABTRACK_STORE={url} LABTRACK_TOKEN={bootstrap[0]}")  # one line, never wrapped
        render.note("More tokens: `labtrack token create --name NAME --role reader|writer|admin`.")
    import uvicorn

    uvicorn.run("labtrack.server.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", server_header=False, proxy_headers=True, timeout_graceful_shutdown=10)


@main.group()
def token() -> None:
    """Manage the tracking server's tokens: on its database (--store URL), or through the server with an admin
    token (LABTRACK_STORE=http(s)://…)."""


@token.command(name="create")
@click.option("--name", required=True, help="Who or what uses it (e.g. ci, alice).")
@click.option("--role", default="writer", show_default=True, type=click.Choice(["reader", "writer", "admin"]))
@click.option("--expires", "expires", metavar="AGE", help="Valid for this long (e.g. 90d, 12h); default: until revoked.")
@click.option("--experiments", "experiments", metavar="A,B", help="Only these experiments (default: all): other "
              "experiments' runs do not exist for it.")
@_json_option
@_command
def token_create(name: str, role: str, expires: str | None, experiments: str | None, as_json: bool) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from labtrack.core.tokens import check_experiments, check_role
    from labtrack.core.validation import check_key, parse_age
    from labtrack.verbs import tracking

    store = tracking.client().store
    expires_time = store.now() + parse_age(expires, "expires") if expires else None
    limited = check_experiments([check_key(e, "experiments") for e in experiments.split(",") if e.strip()]
                                if experiments is not None else None)
    secret, info = store.create_token(check_key(name, "name"), check_role(role), experiments=limited,
                                      expires_time=expires_time)
    if as_json:
        _print_json({"token": secret, "id": info.id, "name": info.name, "role": info.role.value,
                     "experiments": list(info.experiments) if info.experiments else None,
                     "expires_time": info.expires_time})
        return
    render.note(f"token {info.id} ({info.name}, {info.role}" +
                (f", experiments {', '.join(info.experiments)}" if info.experiments else "") +
                (f", expires {render.fmt_time(info.expires_time)}" if info.expires_time else "") + "), shown once:")
    click.echo(secret)


@token.command(name="list")
@_json_option
@_command
def token_list(as_json: bool) -> None:
    """The tokens: id, name, role, created, expiry, revocation (never the tokens themselves)."""
    from labtrack.core.tokens import TokenInfo
    from labtrack.verbs import tracking

    found = tracking.client().store.list_tokens()
    if as_json:
        _print_json(found, list[TokenInfo])
    else:
        render.tokens(found, time.time())


@token.command(name="revoke")
@click.argument("id_or_name")
@_command
def token_revoke(id_or_name: str) -> None:
    """Revoke a token by id, or every live token of a name; servers refuse it within seconds."""
    from labtrack.verbs import tracking

    revoked = tracking.client().store.revoke_token(id_or_name)
    render.note(f"revoked {', '.join(f'{t.id} ({t.name})' for t in revoked)}")

