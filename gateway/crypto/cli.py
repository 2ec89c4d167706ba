"""`shuqiao keys …` (gateway signing keys and department keys), plus the two consumer-side
commands `shuqiao verify-response` and `shuqiao decrypt-field`.

gateway/cli.py mounts these: `app.add_typer(keys_app, name="keys")` and the two commands."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli_support import emit, run_with_engine
from gateway.settings import Settings

keys_app = typer.Typer(
    help="SM2 keys: the gateway's response-signing keys and departments' encryption keys.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
T = TypeVar("T")


def _settings() -> Settings:
    return Settings.from_env()


def _run(job: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.crypto.service import KeyRegistrationError

    return run_with_engine(job, expected=(KeyRegistrationError,))


def _emit(as_json: bool, data: Any, human: str) -> None:
    emit(as_json, data, human)


def _store():  # type: ignore[no-untyped-def]
    from gateway.crypto.signing import open_signing_store

    return open_signing_store(_settings().var_dir, create=False)


# ---------------------------------------------------------------- gateway signing keys


@keys_app.command("generate")
def generate(
    validity_days: Annotated[int, typer.Option(help="Days the new key is valid.")] = 90,
    as_json: JsonOpt = False,
) -> None:
    """Add a new gateway signing key (it becomes the one that signs; others stay valid)."""
    info = _store().generate(validity_days)
    _emit(
        as_json, info.to_json(), f"generated signing key {info.kid} valid until {info.to_json()['not_after']}"
    )


@keys_app.command("rotate")
def rotate(
    overlap_days: Annotated[float, typer.Option(help="Days the retired key still verifies.")] = 7.0,
    validity_days: Annotated[int, typer.Option(help="Days the new key is valid.")] = 90,
    as_json: JsonOpt = False,
) -> None:
    """New signing key now; the previous one is retired but published for --overlap-days.
    Running gateways pick the new key up on their next response."""
    info = _store().rotate(overlap_days, validity_days)
    _emit(
        as_json,
        info.to_json(),
        f"signing with {info.kid}; previous keys retired (overlap {overlap_days} days)",
    )


@keys_app.command("export-public")
def export_public(
    out: Annotated[Path | None, typer.Option(help="Write <kid>.pub.pem files into this directory.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The gateway's public signing keys, as GET /keys/sm2 serves them."""
    from gateway.crypto.routes import public_keys

    keys = public_keys(_store())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for k in keys:
            (out / f"{k['kid']}.pub.pem").write_text(k["pem"])
    if as_json:
        _emit(True, {"keys": keys}, "")
    elif out is None:
        typer.echo("".join(k["pem"] for k in keys), nl=False)
    else:
        typer.echo("\n".join(str(out / f"{k['kid']}.pub.pem") for k in keys))


@keys_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """Gateway signing keys and registered department keys."""
    from gateway.crypto.service import list_department_keys

    store = _store()
    gateway_keys = [{**k.to_json(), "use": "sig"} for k in store.list()]
    dept = [k.to_json() for k in _run(list_department_keys)]
    for d in dept:
        d.pop("pem")
    lines = ["gateway signing keys (var_dir/keys/sm2):"]
    lines += [f"  {k['kid']}  {k['status']:8s} {k['not_before']} → {k['not_after']}" for k in gateway_keys]
    lines.append("department encryption keys:")
    lines += [
        f"  {k['department']:8s} {k['kid']}  {k['status']:8s} {k['not_before']} → {k['not_after']}"
        for k in dept
    ]
    _emit(as_json, {"gateway": gateway_keys, "departments": dept}, "\n".join(lines))


@keys_app.command("register-department")
def register_department(
    department: Annotated[str, typer.Option(help="Department code, e.g. hrss.")],
    pubkey: Annotated[Path, typer.Option(help="The department's SM2 public key PEM.")],
    validity_days: Annotated[int, typer.Option(help="Days fields may be encrypted to it.")] = 365,
    as_json: JsonOpt = False,
) -> None:
    """Register a department's SM2 public key; its previous key is retired. Sensitive
    fields granted to it are then delivered encrypted to this key."""
    from gateway.crypto.service import register_department_key

    pem = pubkey.read_text()
    info = _run(lambda e: register_department_key(e, department, pem, validity_days=validity_days))
    data = info.to_json()
    data.pop("pem")
    _emit(as_json, data, f"{department}: key {info.kid} active until {data['not_after']}")


@keys_app.command("revoke-department")
def revoke_department(kid: str, as_json: JsonOpt = False) -> None:
    """Withdraw a department key (e.g. compromised): nothing is encrypted to it again."""
    from gateway.crypto.service import set_department_key_status

    info = _run(lambda e: set_department_key_status(e, kid, "revoked"))
    data = info.to_json()
    data.pop("pem")
    _emit(as_json, data, f"{info.department}: key {kid} revoked")


@keys_app.command("require-signed-requests")
def require_signed_requests(
    department: Annotated[str, typer.Option(help="Department code, e.g. hrss.")],
    off: Annotated[bool, typer.Option("--off", help="Make signing optional again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Require (or, with --off, stop requiring) RFC 9421 SM2-signed share-tier requests from a
    department, made with its registered department key. Signatures that are sent are always
    verified. Running gateways apply the change within the catalogue poll interval."""
    from gateway.crypto.requests import set_signed_requests_required

    required = _run(lambda e: set_signed_requests_required(e, department, not off))
    state = "required" if required else "optional"
    _emit(
        as_json,
        {"department": department, "signed_requests": state},
        f"{department}: signed requests {state}",
    )


# ---------------------------------------------------------------- consumer side


def sign_request_cmd(
    url: Annotated[str, typer.Argument(help="The URL the request goes to, e.g. https://gw/share/graphql.")],
    key: Annotated[Path, typer.Option(help="The department's SM2 private key PEM.")],
    body: Annotated[Path, typer.Option(help="The request body file, sent as is (curl --data-binary @FILE).")],
    method: Annotated[str, typer.Option(help="HTTP method.")] = "POST",
    keyid: Annotated[str | None, typer.Option(help="Default: computed from the key.")] = None,
    base_out: Annotated[Path | None, typer.Option(help="Also write the signature base here.")] = None,
) -> None:
    """Sign a request (RFC 9421, SM2): print Content-Digest, Signature-Input and Signature
    header lines, for `curl -H @FILE --data-binary @BODY URL`."""
    from keys import sm2
    from keys.errors import CryptoError
    from keys.keystore import key_id
    from keys.rfc9421 import sign_request, signed_request

    try:
        private = sm2.load_pem_private_key(key.read_bytes())
        data = body.read_bytes()
        added = sign_request(private, keyid or key_id(private.public_key), method, url, {}, data)
    except (OSError, ValueError, CryptoError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if base_out is not None:
        base_out.write_bytes(signed_request(method, url, added).base)
    typer.echo("".join(f"{name}: {value}\n" for name, value in added.items()), nl=False)


def parse_http_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """A saved response (`curl -si` output): status, headers (lower-cased, repeated lines
    joined with ", "), body bytes exactly as received. Interim 1xx blocks are skipped."""
    while True:
        for sep in (b"\r\n\r\n", b"\n\n"):
            head, found, rest = raw.partition(sep)
            if found:
                break
        else:
            raise ValueError("no blank line between the headers and the body")
        lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
        parts = lines[0].split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP status line: {lines[0]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            raw = rest
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"not a header line: {line!r}")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return status, headers, rest


def load_public_keys(keys_url: str | None, pubkeys: list[Path]) -> dict[str, Any]:
    from keys import sm2
    from keys.keystore import key_id

    found: dict[str, Any] = {}
    if keys_url:
        if not keys_url.startswith(("http://", "https://")):
            raise ValueError("--keys-url must be an http(s) URL")
        with urllib.request.urlopen(keys_url, timeout=10) as resp:  # noqa: S310 (scheme checked above)
            doc = json.loads(resp.read())
        for entry in doc["keys"]:
            public = sm2.load_pem_public_key(entry["pem"])
            if key_id(public) != entry["kid"]:
                raise ValueError(f"{keys_url}: key {entry['kid']} does not match its PEM")
            found[entry["kid"]] = public
    for path in pubkeys:
        public = sm2.load_pem_public_key(path.read_bytes())
        found[key_id(public)] = public
    return found


def verify_response_cmd(
    response: Annotated[Path, typer.Argument(help="Saved response: `curl -si … > response.txt`.")],
    body_file: Annotated[
        Path | None,
        typer.Option(
            "--body",
            help="The body in its own file; RESPONSE then holds the status line "
            "and headers only (a detached signature, e.g. an audit export's .sig).",
        ),
    ] = None,
    keys_url: Annotated[str | None, typer.Option(help="The gateway's GET /keys/sm2 URL.")] = None,
    pubkey: Annotated[list[Path] | None, typer.Option(help="A public key PEM (repeatable).")] = None,
    max_age: Annotated[int | None, typer.Option(help="Reject signatures older than this (s).")] = None,
    openssl_dir: Annotated[
        Path | None, typer.Option(help="Also write base.txt, sig.der, body.bin here for openssl.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a gateway response's RFC 9421 SM2 signature and SM3 Content-Digest (also a saved
    file against its detached signature: `--body FILE`)."""
    from keys.errors import SignatureError
    from keys.rfc9421 import signed_response, verify_response

    if not keys_url and not pubkey:
        typer.echo("error: give --keys-url or --pubkey", err=True)
        raise typer.Exit(2)
    try:
        raw = response.read_bytes()
        if body_file is not None and b"\r\n\r\n" not in raw and b"\n\n" not in raw:
            raw += b"\r\n"  # a header block saved without its closing blank line
        status, headers, body = parse_http_response(raw)
        if body_file is not None:
            if body:
                raise ValueError("with --body, the response file must hold no body")
            body = body_file.read_bytes()
        keys = load_public_keys(keys_url, pubkey or [])
    except (OSError, ValueError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        if openssl_dir is not None:
            signed = signed_response(status, headers)
            openssl_dir.mkdir(parents=True, exist_ok=True)
            (openssl_dir / "base.txt").write_bytes(signed.base)
            (openssl_dir / "sig.der").write_bytes(signed.signature)
            (openssl_dir / "body.bin").write_bytes(body)
        result = verify_response(status, headers, body, keys.get, max_age=max_age)
    except SignatureError as err:
        _emit(as_json, {"ok": False, "reason": str(err)}, f"FAILED: {err}")
        raise typer.Exit(1) from None
    data = {"ok": True, "keyid": result.keyid, "created": result.created, "covered": list(result.components)}
    _emit(
        as_json,
        data,
        f"OK keyid={result.keyid} created={result.created} covered={' '.join(result.components)}",
    )


def decrypt_field_cmd(
    values: Annotated[list[str], typer.Argument(help="Encrypted values (SM2-SM4-GCM.…).")],
    key: Annotated[Path, typer.Option(help="The department's SM2 private key PEM.")],
    field: Annotated[str, typer.Option(help="dataset.field the value came from, e.g. population.idNumber.")],
) -> None:
    """Decrypt field values the gateway encrypted to your department's key."""
    from gateway.crypto.encryption import decrypt_field
    from keys import sm2
    from keys.errors import CryptoError

    dataset, dot, name = field.partition(".")
    if not dot or not dataset or not name:
        typer.echo("error: --field is dataset.field, e.g. population.idNumber", err=True)
        raise typer.Exit(2)
    try:
        private = sm2.load_pem_private_key(key.read_bytes())
    except (OSError, ValueError, CryptoError) as err:
        typer.echo(f"error: {key}: {err}", err=True)
        raise typer.Exit(2) from None
    failed = False
    for value in values:
        try:
            typer.echo(decrypt_field(private, value, dataset, name))
        except CryptoError as err:
            typer.echo(f"error: {err}", err=True)
            failed = True
    if failed:
        raise typer.Exit(1)
