"""AWS Signature Version 4 on incoming PutEvents requests, checked with botocore's own signer.

`check_headers` reads the `Authorization` header (before the body is read): a missing one,
a malformed one, an access key that is not configured, a credential scoped to another
region or service, or an `X-Amz-Date` more than 5 minutes from now is refused at once.
`verify` then rebuilds the request from what was received — method, URL, the headers the
client says it signed, and the body — signs a copy with `botocore.auth.SigV4Auth` at the
request's own `X-Amz-Date`, and compares the two signatures in constant time. Failures are
`AuthFailure`s carrying the HTTP status, error code and message AWS answers with. Nothing
here echoes a secret, and a client's signature is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "events"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=5)
"""How far a request's `X-Amz-Date` may be from the server's clock (as AWS allows)."""
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_FIELD = re.compile(r"\s*([A-Za-z]+)=([^,\s]*)\s*(?:,|$)")

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)


class AuthFailure(Exception):
    """A request refused for its signature: the AWS error `code`, HTTP `status` and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _missing() -> AuthFailure:
    return AuthFailure(403, "MissingAuthenticationTokenException", "Missing Authentication Token")


def _incomplete(problem: str) -> AuthFailure:
    return AuthFailure(400, "IncompleteSignatureException", problem)


def _invalid(message: str) -> AuthFailure:
    return AuthFailure(400, "InvalidSignatureException", message)


@dataclass(frozen=True)
class Signed:
    """What a request's `Authorization` header claims, once its key and date are checked."""

    access_key_id: str
    secret_access_key: str
    amz_date: str
    signed_headers: tuple[str, ...]
    signature: str


def check_headers(
    headers: Mapping[str, str], credentials: Mapping[str, str], region: str, now: datetime
) -> Signed:
    """Everything about a request's signature that needs no body; raises AuthFailure.

    `headers` are the request's (case-insensitive mapping), `credentials` access key id ->
    secret access key, `now` the server's clock (UTC).
    """
    authorization = headers.get("Authorization")
    if authorization is None:
        raise _missing()
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Authorization header must use the {ALGORITHM} algorithm.")
    fields = dict(_FIELD.findall(rest))
    required = ("Credential", "SignedHeaders", "Signature")
    lacking = [name for name in required if not fields.get(name)]
    amz_date = headers.get("X-Amz-Date")
    problems = [f"Authorization header requires '{name}' parameter." for name in lacking]
    if amz_date is None:
        problems.append("Authorization header requires existence of a 'X-Amz-Date' header.")
    if problems:
        raise _incomplete(" ".join(problems))
    assert amz_date is not None
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/aws4_request."
        )
    key_id, date, scope_region, service, _ = scope
    if key_id not in credentials:
        raise AuthFailure(
            400,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise _incomplete("X-Amz-Date must be in the ISO 8601 basic format.") from None
    if date != amz_date[:8]:
        raise _invalid(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if scope_region != region:
        raise _invalid(f"Credential should be scoped to a valid region, not '{scope_region}'.")
    if service != SERVICE:
        raise _invalid(f"Credential should be scoped to correct service: '{SERVICE}'.")
    _check_clock(signed_at, now)
    return Signed(
        key_id,
        credentials[key_id],
        amz_date,
        tuple(fields["SignedHeaders"].lower().split(";")),
        fields["Signature"],
    )


def _check_clock(signed_at: datetime, now: datetime) -> None:
    """Refuse a signature more than `MAX_SKEW` away from `now` (AWS's messages)."""
    stamp = signed_at.strftime(AMZ_DATE)
    if signed_at < now - MAX_SKEW:
        earliest = (now - MAX_SKEW).strftime(AMZ_DATE)
        raise _invalid(
            f"Signature expired: {stamp} is now earlier than {earliest} "
            f"({now.strftime(AMZ_DATE)} - 5 min.)"
        )
    if signed_at > now + MAX_SKEW:
        latest = (now + MAX_SKEW).strftime(AMZ_DATE)
        raise _invalid(
            f"Signature not yet current: {stamp} is still later than {latest} "
            f"({now.strftime(AMZ_DATE)} + 5 min.)"
        )


def verify(
    signed: Signed,
    region: str,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    """Recompute the signature with botocore over the received request; raises AuthFailure.

    `url` is the received one (`http://HOST/raw/path?query`), `headers` every received
    header in order (repeats included). Only the headers named in SignedHeaders are signed;
    `host` and `x-amz-date` must be among them. A signed `X-Amz-Content-SHA256` must be the
    body's real hash (botocore would trust it instead of hashing the body).
    """
    names = set(signed.signed_headers)
    if not {"host", "x-amz-date"} <= names:
        raise _invalid("'Host' and 'X-Amz-Date' must be signed headers.")
    kept = [(name, value) for name, value in headers if name.lower() in names]
    if {name.lower() for name, _ in kept} != names:
        raise _invalid(MISMATCH)  # a header the client signed did not arrive
    for name, value in kept:
        if name.lower() == "x-amz-content-sha256" and value != hashlib.sha256(body).hexdigest():
            raise _invalid("The provided 'x-amz-content-sha256' header does not match the body.")
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in kept:
        request.headers[name] = value  # an email.message.Message: repeats are kept
    request.context["timestamp"] = signed.amz_date
    signer = SigV4Auth(Credentials(signed.access_key_id, signed.secret_access_key), SERVICE, region)
    if set(signer.headers_to_sign(request)) != names:
        raise _invalid(MISMATCH)  # headers botocore never signs (user-agent, expect, ...)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    given = signed.signature.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise _invalid(MISMATCH)
