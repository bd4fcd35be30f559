"""AWS Signature Version 4 for one request with a body in memory (no query string, no S3 rules).

The signing key depends only on the secret, the day, the region and the service, so it is made
once a day instead of four HMACs per request.
"""

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Dict, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
# Headers a proxy may change or add, left unsigned as botocore leaves them.
UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: Optional[str]


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class Signer:
    def __init__(self, region: str, service: str):
        self.region, self.service = region, service
        self._key_for: Tuple[str, str] = ("", "")
        self._key = b""

    def signed_headers(self, credentials: Credentials, method: str, path: str,
                       headers: Mapping[str, str], body: bytes,
                       now: Optional[datetime] = None) -> Dict[str, str]:
        """``headers`` (Host included) plus X-Amz-Date, X-Amz-Security-Token and Authorization.

        ``path`` is the path as sent (already URI-encoded); SigV4 encodes it once more.
        """
        amz_date = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        result = dict(headers)
        result["X-Amz-Date"] = amz_date
        if credentials.token:
            result["X-Amz-Security-Token"] = credentials.token
        canonical = {name.lower(): " ".join(str(value).split()) for name, value in result.items()
                     if name.lower() not in UNSIGNED_HEADERS}
        names = sorted(canonical)
        signed_names = ";".join(names)
        canonical_request = "\n".join([
            method,
            quote(path, safe="/~"),
            "",  # no query string
            "".join(f"{name}:{canonical[name]}\n" for name in names),
            signed_names,
            hashlib.sha256(body).hexdigest(),
        ])
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join([
            ALGORITHM, amz_date, scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ])
        signature = hmac.new(self._signing_key(credentials.secret_key, day),
                             string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        result["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                                   f"SignedHeaders={signed_names}, Signature={signature}")
        return result

    def _signing_key(self, secret_key: str, day: str) -> bytes:
        if self._key_for != (secret_key, day):
            key = _hmac(f"AWS4{secret_key}".encode("utf-8"), day)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._key_for, self._key = (secret_key, day), key
        return self._key
