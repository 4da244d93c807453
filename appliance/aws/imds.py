"""IMDSv2 client: session token first, never an IMDSv1 fallback.

The endpoint follows botocore's settings so tests and air-gapped users can point it
elsewhere: AWS_EC2_METADATA_SERVICE_ENDPOINT, else AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE
(IPv4 | IPv6), else http://169.254.169.254.
"""
import dataclasses
import ipaddress
import os
import re
import time
import urllib.error
import urllib.request

TOKEN_TTL = 21600          # seconds; the maximum IMDS grants
DEFAULT_V4 = "http://169.254.169.254"
DEFAULT_V6 = "http://[fd00:ec2::254]"


class ImdsError(Exception):
    """IMDS unreachable or refusing; str() says which request and why."""


# us-east-1, eu-central-2, us-gov-west-1, us-iso-east-1, cn-north-1, eusc-de-east-1
REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$")


def check_region(region, source):
    """The region names the EC2 endpoint: an empty or malformed one is an error, not a guess."""
    if not REGION.match(region or ""):
        raise ImdsError(f"region {region!r} from {source} is not an AWS region name (like us-east-1)")
    return region


def _ipv4(what, value, cidr):
    try:
        ipaddress.IPv4Network(value, strict=False) if cidr else ipaddress.IPv4Address(value)
    except ValueError:
        raise ImdsError(f"IMDS {what}: {value!r} is not an IPv4 {'CIDR' if cidr else 'address'}") from None


def endpoint():
    url = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    if url:
        return url.rstrip("/")
    mode = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4")
    return DEFAULT_V6 if mode.lower() == "ipv6" else DEFAULT_V4


@dataclasses.dataclass(frozen=True)
class Eni:
    """One attached ENI as IMDS describes it (network/interfaces/macs/<mac>/)."""
    mac: str
    device_number: int
    eni_id: str
    subnet_id: str
    vpc_id: str
    subnet_cidr: str
    vpc_cidrs: tuple
    local_ipv4s: tuple

    @property
    def primary_ipv4(self):
        return self.local_ipv4s[0] if self.local_ipv4s else None


class Imds:
    def __init__(self, base=None, timeout=2.0, attempts=3):
        self.base = (base or endpoint()).rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self._token = None
        self._expires = 0.0

    def _open(self, req, what):
        """urlopen with retries on connection errors only; HTTP errors are answers."""
        for attempt in range(self.attempts):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.status, resp.headers, resp.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read().decode(errors="replace")
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                if attempt + 1 == self.attempts:
                    raise ImdsError(f"IMDS {what} at {self.base}: unreachable ({reason})") from None
                time.sleep(0.5 * (attempt + 1))

    def token(self, refresh=False):
        if self._token and not refresh and time.monotonic() < self._expires:
            return self._token
        req = urllib.request.Request(f"{self.base}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)})
        status, headers, body = self._open(req, "token PUT")
        if status != 200 or not body.strip():
            raise ImdsError(f"IMDSv2 token PUT {self.base}/latest/api/token failed: HTTP {status}"
                            f" {body.strip()[:200]!r}; the appliance uses IMDSv2 only (is the metadata"
                            " service enabled, and the PUT hop limit >= 1?)")
        ttl = int(headers.get("X-aws-ec2-metadata-token-ttl-seconds") or TOKEN_TTL)
        self._token = body.strip()
        self._expires = time.monotonic() + max(ttl - 60, 1)   # renew a minute early
        return self._token

    def get(self, path, optional=False):
        """GET latest/meta-data/<path>; None for 404 when optional, else ImdsError."""
        url = f"{self.base}/latest/meta-data/{path}"
        for refresh in (False, True):           # one retry with a fresh token after 401
            req = urllib.request.Request(url, headers={"X-aws-ec2-metadata-token": self.token(refresh)})
            status, _, body = self._open(req, f"GET {path}")
            if status != 401:
                break
        if status == 200:
            return body
        if status == 404 and optional:
            return None
        if status == 401:
            raise ImdsError(f"IMDS GET {url}: HTTP 401, the session token was rejected twice")
        raise ImdsError(f"IMDS GET {url}: HTTP {status} {body.strip()[:200]!r}")

    def _required(self, path):
        value = self.get(path).strip()
        if not value:
            raise ImdsError(f"IMDS {path} is empty")
        return value

    def region(self):
        return self.get("placement/region").strip()

    def instance_id(self):
        return self.get("instance-id").strip()

    def enis(self):
        """Every attached ENI, ordered by device number."""
        out = []
        for line in self.get("network/interfaces/macs/").split():
            mac = line.strip().rstrip("/").lower()
            if not mac:
                continue
            p = f"network/interfaces/macs/{mac}/"
            try:
                dev = int(self.get(p + "device-number").strip())
            except ValueError:
                raise ImdsError(f"IMDS {p}device-number is not a number") from None
            # Every value below ends up in a role, an address or a route: an empty or malformed
            # one fails here, naming the MAC and the key, before anything is changed.
            subnet_cidr = self._required(p + "subnet-ipv4-cidr-block")
            vpc_cidrs = tuple(self._required(p + "vpc-ipv4-cidr-blocks").split())
            local_ipv4s = tuple((self.get(p + "local-ipv4s", optional=True) or "").split())
            _ipv4(p + "subnet-ipv4-cidr-block", subnet_cidr, cidr=True)
            for c in vpc_cidrs:
                _ipv4(p + "vpc-ipv4-cidr-blocks", c, cidr=True)
            for a in local_ipv4s:
                _ipv4(p + "local-ipv4s", a, cidr=False)
            out.append(Eni(
                mac=mac,
                device_number=dev,
                eni_id=self._required(p + "interface-id"),
                subnet_id=self._required(p + "subnet-id"),
                vpc_id=self.get(p + "vpc-id").strip(),
                subnet_cidr=subnet_cidr,
                vpc_cidrs=vpc_cidrs,
                local_ipv4s=local_ipv4s,
            ))
        if not out:
            raise ImdsError("IMDS lists no network interfaces under network/interfaces/macs/")
        return sorted(out, key=lambda e: e.device_number)
