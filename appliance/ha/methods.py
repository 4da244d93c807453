"""`ha.method` -> the object that reads who carries the traffic (`owner()`) and takes it
(`take()`): routes.RouteTables, eip.ElasticIp or eni.FloatingEni. `auto` ENIs are resolved
first (discover.py). The EC2 region and endpoint are boto3's, as for the bootstrap."""
from appliance.ha import discover
from appliance.ha.eip import ElasticIp
from appliance.ha.eni import FloatingEni
from appliance.ha.routes import RouteTables


def build(ha, ec2, bootstrap_status_file, imds):
    """(takeover object, the resolved Ha, notes on what `auto` resolved to)."""
    ha, notes = discover.resolve(ha, bootstrap_status_file, imds, ec2)
    if ha.method == "eip":
        return ElasticIp(ec2, ha.eip, ha.eni, ha.peer_eni), ha, notes
    if ha.method == "eni":
        iid = discover.instance_id(discover.bootstrap_status(bootstrap_status_file), imds)
        notes.append(f"instance {iid}")
        return FloatingEni(ec2, ha.floating_eni, iid, ha.floating_device_index), ha, notes
    return RouteTables(ec2, ha.route_tables, ha.eni, ha.peer_eni, ha.outside_eni, ha.peer_outside_eni), ha, notes
