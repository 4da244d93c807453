"""The two EC2 calls the appliance makes: read and turn off source/dest check on an ENI.

The endpoint is boto3's own: AWS_ENDPOINT_URL_EC2 (or AWS_ENDPOINT_URL) overrides it.
"""

DENIED_CODES = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}


class Ec2Error(Exception):
    """An EC2 call that did not complete; str() names the call, the ENI and the cause."""


class Ec2Denied(Ec2Error):
    """The instance role lacks the permission for the call."""


def client(region):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15)
    try:
        return boto3.client("ec2", region_name=region, config=cfg)
    except (BotoCoreError, ValueError) as e:     # InvalidRegionError; ValueError "Invalid endpoint"
        raise Ec2Error(f"EC2 client for region {region!r}: {e}") from None


def _call(fn, action, eni_id, **kw):
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError
    try:
        return fn(**kw)
    except ClientError as e:
        err = e.response.get("Error", {})
        code, msg = err.get("Code", "?"), err.get("Message", "")
        cls = Ec2Denied if code in DENIED_CODES else Ec2Error
        raise cls(f"EC2 {action} on {eni_id} failed: {code}: {msg}") from None
    except (BotoCoreError, ResponseParserError) as e:   # the latter: an answer that is not EC2's (a proxy's HTML)
        raise Ec2Error(f"EC2 {action} on {eni_id} failed: {e}") from None


def source_dest_check(ec2, eni_id):
    """True when EC2 still drops traffic not addressed to (or from) this ENI."""
    r = _call(ec2.describe_network_interface_attribute, "DescribeNetworkInterfaceAttribute", eni_id,
              NetworkInterfaceId=eni_id, Attribute="sourceDestCheck")
    return bool(r["SourceDestCheck"]["Value"])


def disable_source_dest_check(ec2, eni_id):
    _call(ec2.modify_network_interface_attribute, "ModifyNetworkInterfaceAttribute", eni_id,
          NetworkInterfaceId=eni_id, SourceDestCheck={"Value": False})
