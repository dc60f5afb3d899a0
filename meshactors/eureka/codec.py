"""The Eureka wire format: InstanceInfo in JSON and XML, parsed into meshactors Instances and rendered back.

A Eureka instance becomes one registry record per VIP it serves (a comma-separated `vipAddress` gives several):
record i carries the i-th VIP (plain `port`) and the i-th SVIP (`securePort`, when enabled). Eureka fields that
meshactors has no field for (host name, URLs, the VIP lists as sent, the status override) travel in the record's
metadata under the reserved `eureka/` prefix; they are not shown as the client's metadata.
"""

from __future__ import annotations

import ipaddress
import json
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from meshactors.errors import InvalidArgument
from meshactors.model import Instance, LeaseSettings, Status
from meshactors.model.validate import (
    RESERVED_METADATA_PREFIX,
    is_valid_vip_name,
    parse_status,
    validate_instance,
    validate_vip_name,
)

RESERVED = RESERVED_METADATA_PREFIX
OVERRIDE_KEY = "eureka/overriddenstatus"
HOST_NAME_KEY = "eureka/hostName"
VIPS_KEY = "eureka/vipAddress"
SVIPS_KEY = "eureka/secureVipAddress"
DATA_CENTER_KEY = "eureka/dataCenter"
URL_FIELDS = ("homePageUrl", "statusPageUrl", "healthCheckUrl", "secureHealthCheckUrl")
UNKNOWN = "UNKNOWN"
DEFAULT_DC_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
AMAZON_DC_CLASS = "com.netflix.appinfo.AmazonInfo"
EMPTY_MAP_CLASS = "java.util.Collections$EmptyMap"

# Bounds on a request body, checked before anything recursive sees it: an InstanceInfo nests 4 levels deep.
MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32

_RESERVED_FIELD = f"metadata['{RESERVED}"
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Our validation's field names, as the Eureka client called them.
_FIELD_NAMES = {
    "vip": "vipAddress",
    "svip": "secureVipAddress",
    "instance_id": "instanceId",
    "port": "port",
    "secure_port": "securePort",
    "host": "ipAddr",
    "zone": "metadata.zone",
    "lease.renewal_interval_s": "leaseInfo.renewalIntervalInSecs",
    "lease.duration_s": "leaseInfo.durationInSecs",
}


# ---- parsing ---------------------------------------------------------------------------------------------------


def wants_xml(content_type: str, text: str) -> bool:
    content_type = content_type.lower()
    if "xml" in content_type:
        return True
    if "json" in content_type:
        return False
    return text.lstrip().startswith("<")


def parse_instance_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The InstanceInfo object of a register request, from JSON or XML as the Content-Type says."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidArgument("body", f"is {len(body)} bytes, at most {MAX_BODY_BYTES} allowed")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument("body", f"is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise InvalidArgument("body", "is empty; expected an instance (JSON or XML)")
    if wants_xml(content_type, text):
        tag, obj = parse_xml(text)
        if tag != "instance":
            raise InvalidArgument("body", f"the XML root element is <{tag}>, expected <instance>")
    else:
        doc = parse_json(text)
        if not isinstance(doc, dict):
            raise InvalidArgument("body", 'expected a JSON object {"instance": {...}}')
        obj = doc.get("instance", doc)
    if not isinstance(obj, dict):
        raise InvalidArgument("instance", "must be an object")
    return obj


def _too_deep() -> InvalidArgument:
    return InvalidArgument("body", f"nests objects deeper than {MAX_DEPTH} levels")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(text: str) -> Any:
    """JSON text, its nesting bounded before the (recursive) parser sees it."""
    if json_depth(text) > MAX_DEPTH:
        raise _too_deep()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("body", f"malformed JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a number longer than int() converts
        raise InvalidArgument("body", f"malformed JSON: {str(exc)[:200]}") from None


def _refuse_dtd(*_: Any) -> None:
    raise InvalidArgument("body", "XML with a DOCTYPE or entity declarations is not accepted")


def _check_xml(text: str) -> None:
    """A first pass with expat: no DOCTYPE, no entity declarations, nesting at most MAX_DEPTH."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    depth = 0

    def start(*_: Any) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep()

    def end(*_: Any) -> None:
        nonlocal depth
        depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise InvalidArgument("body", f"malformed XML: {exc}") from None


def parse_xml(text: str) -> tuple[str, Any]:
    """XML as Eureka's JSON shape: attributes become "@name", an element's text next to attributes "$"."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise InvalidArgument("body", "XML with a DOCTYPE or entity declarations is not accepted")
    _check_xml(text)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InvalidArgument("body", f"malformed XML: {exc}") from None
    return root.tag, _element(root)


def _element(el: ET.Element) -> Any:
    children = list(el)
    attrs: dict[str, Any] = {f"@{k}": v for k, v in el.attrib.items()}
    if not children:
        text = (el.text or "").strip()
        if attrs:
            return {**attrs, "$": text} if text else attrs
        return text
    out = attrs
    for child in children:
        value = _element(child)
        if child.tag in out:
            prev = out[child.tag]
            out[child.tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[child.tag] = value
    return out


def _text(info: dict[str, Any], key: str) -> str:
    value = info.get(key)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise InvalidArgument(key, "must be a string, not an object or a list")
    return str(value).strip()


def _enabled(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _port(info: dict[str, Any], key: str, enabled_by_default: bool) -> tuple[int, bool]:
    value = info.get(key)
    if value is None or value == "":
        return 0, False
    enabled = enabled_by_default
    raw: Any = value
    if isinstance(value, dict):
        raw = value.get("$")
        if "@enabled" in value:
            enabled = _enabled(value["@enabled"])
        if raw is None or raw == "":
            if enabled:
                raise InvalidArgument(key, "is enabled but has no number ('$')")
            return 0, False
    if isinstance(raw, bool):
        raise InvalidArgument(key, f"{raw!r} is not a port number")
    try:
        port = int(str(raw).strip())
    except ValueError:
        raise InvalidArgument(key, f"{raw!r} is not a port number") from None
    if enabled and not 1 <= port <= 65535:
        raise InvalidArgument(key, f"{port} is out of range 1-65535")
    return port, enabled


def _int(obj: dict[str, Any], key: str, field: str, default: int) -> int:
    value = obj.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidArgument(field, f"{value!r} is not a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not a whole number") from None


def parse_eureka_status(value: str, field: str) -> Status:
    """Eureka's UNKNOWN has no meshactors twin; like STARTING it receives no traffic."""
    if value.strip().upper() == UNKNOWN:
        return Status.STARTING
    return parse_status(value.strip(), field)


def _names(raw: str, field: str) -> list[str]:
    out: list[str] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if name and name not in out:
            out.append(validate_vip_name(name, field))
    return out


def _metadata(info: dict[str, Any]) -> dict[str, str]:
    raw = info.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("metadata", "must be an object of names to strings")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith("@"):  # Jackson/XStream type hints such as "@class"
            continue
        if key.startswith(RESERVED):
            raise InvalidArgument(f"metadata.{key}", f"the {RESERVED!r} prefix is reserved for meshactors")
        if isinstance(value, dict | list):
            raise InvalidArgument(f"metadata.{key}", "must be a string")
        out[key] = "" if value is None else str(value)
    return out


def _zone(info: dict[str, Any], metadata: dict[str, str]) -> str:
    if metadata.get("zone"):
        return metadata["zone"]
    dc = info.get("dataCenterInfo")
    if isinstance(dc, dict) and isinstance(dc.get("metadata"), dict):
        zone = dc["metadata"].get("availability-zone")
        if zone:
            return str(zone)
    return "default"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def records_from_info(info: dict[str, Any], app_in_path: str = "") -> list[Instance]:
    """The registry records for one Eureka InstanceInfo, each validated; InvalidArgument names the Eureka field."""
    app = _text(info, "app")
    if not app:
        raise InvalidArgument("app", "is required")
    if app_in_path and app.upper() != app_in_path.upper():
        raise InvalidArgument("app", f"{app!r} does not match the app in the path ({app_in_path!r})")
    app = app.upper()
    host_name = _text(info, "hostName")
    if not host_name:
        raise InvalidArgument("hostName", "is required")
    ip = _text(info, "ipAddr")
    if ip and not _is_ip(ip):
        raise InvalidArgument("ipAddr", f"{ip!r} is not an IP address")
    host = ip or host_name  # endpoints are addresses: prefer the IP
    instance_id = _text(info, "instanceId") or host_name

    port, port_on = _port(info, "port", True)
    secure_port, secure_on = _port(info, "securePort", False)
    raw_vips, raw_svips = _text(info, "vipAddress"), _text(info, "secureVipAddress")
    vips = _names(raw_vips, "vipAddress") if port_on else []
    if port_on and not vips:
        if not is_valid_vip_name(app.lower()):
            raise InvalidArgument("vipAddress", f"is required (the app name {app!r} is not a usable VIP name)")
        vips = [app.lower()]
    svips = _names(raw_svips, "secureVipAddress") if secure_on else []
    if secure_on and not svips:
        raise InvalidArgument("secureVipAddress", "is required when securePort is enabled")
    for name in svips:
        if name in vips:
            raise InvalidArgument(
                "secureVipAddress",
                f"{name!r} is also a vipAddress; meshactors routes a name either plain or over mTLS, not both",
            )
    if not vips and not svips:
        raise InvalidArgument("port", "neither port nor securePort is enabled: the instance would serve nothing")

    status = parse_eureka_status(_text(info, "status") or "UP", "status")
    lease_info = info.get("leaseInfo") or {}
    if not isinstance(lease_info, dict):
        raise InvalidArgument("leaseInfo", "must be an object")
    lease = LeaseSettings(
        renewal_interval_s=_int(lease_info, "renewalIntervalInSecs", "leaseInfo.renewalIntervalInSecs", 30),
        duration_s=_int(lease_info, "durationInSecs", "leaseInfo.durationInSecs", 90),
    )
    metadata = _metadata(info)
    zone = _zone(info, metadata)

    kept: dict[str, str] = {}
    if host_name != host:
        kept[HOST_NAME_KEY] = host_name
    for name in URL_FIELDS:
        value = _text(info, name)
        if value:
            kept[RESERVED + name] = value
    if raw_vips and raw_vips != (vips[0] if len(vips) == 1 else None):
        kept[VIPS_KEY] = raw_vips
    if raw_svips and raw_svips != (svips[0] if len(svips) == 1 else None):
        kept[SVIPS_KEY] = raw_svips
    dc = info.get("dataCenterInfo")
    dc_name = str(dc.get("name") or "") if isinstance(dc, dict) else ""
    if dc_name and dc_name != "MyOwn":
        kept[DATA_CENTER_KEY] = dc_name

    base = Instance(
        app=app,
        instance_id=instance_id,
        host=host,
        zone=zone,
        status=status,
        metadata={**metadata, **kept},
        lease=lease,
    )
    records = []
    for i in range(max(len(vips), len(svips))):
        vip = vips[i] if i < len(vips) else ""
        svip = svips[i] if i < len(svips) else ""
        record = replace(base, vip=vip, port=port if vip else 0, svip=svip, secure_port=secure_port if svip else 0)
        records.append(_validated(record, host_field="ipAddr" if ip else "hostName"))
    return records


def _validated(record: Instance, host_field: str) -> Instance:
    try:
        return validate_instance(record)
    except InvalidArgument as exc:
        field = _FIELD_NAMES.get(exc.field, exc.field)
        if exc.field == "host":
            field = host_field
        elif exc.field.startswith(_RESERVED_FIELD):  # metadata['eureka/homePageUrl'] -> homePageUrl
            field = exc.field[len(_RESERVED_FIELD) : -2]
        raise InvalidArgument(field, exc.reason) from None


# ---- rendering -------------------------------------------------------------------------------------------------


def client_metadata(inst: Instance) -> dict[str, str]:
    return {k: v for k, v in inst.metadata.items() if not k.startswith(RESERVED)}


def group_key(inst: Instance) -> tuple[str, str]:
    """Which Eureka instance a record belongs to: (APP, instance id)."""
    return inst.app.upper(), inst.instance_id


def status_of(records: Sequence[Instance]) -> str:
    return records[0].status.value


def instance_info(records: Sequence[Instance], action: str = "") -> dict[str, Any]:
    """One Eureka InstanceInfo (JSON shape) for the records of one instance (see the module docstring)."""
    first = sorted(records, key=lambda r: (not r.vip, r.routing_name))[0]
    md = first.metadata
    vips = md.get(VIPS_KEY) or ",".join(dict.fromkeys(r.vip for r in records if r.vip))
    svips = md.get(SVIPS_KEY) or ",".join(dict.fromkeys(r.svip for r in records if r.svip))
    port = next((r.port for r in records if r.vip), 0)
    secure_port = next((r.secure_port for r in records if r.svip), 0)
    dc_name = md.get(DATA_CENTER_KEY, "MyOwn")
    registered = first.registered_at_ms
    info: dict[str, Any] = {
        "instanceId": first.instance_id,
        "hostName": md.get(HOST_NAME_KEY, first.host),
        "app": first.app.upper(),
        "ipAddr": first.host,
        "status": first.status.value,
        "overriddenstatus": md.get(OVERRIDE_KEY, UNKNOWN),
        "port": {"$": port, "@enabled": "true" if port else "false"},
        "securePort": {"$": secure_port, "@enabled": "true" if secure_port else "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": AMAZON_DC_CLASS if dc_name == "Amazon" else DEFAULT_DC_CLASS, "name": dc_name},
        "leaseInfo": {
            "renewalIntervalInSecs": first.lease.renewal_interval_s,
            "durationInSecs": first.lease.duration_s,
            "registrationTimestamp": registered,
            "lastRenewalTimestamp": registered,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": registered,
        },
        "metadata": client_metadata(first) or {"@class": EMPTY_MAP_CLASS},
    }
    for name in URL_FIELDS:
        if RESERVED + name in md:
            info[name] = md[RESERVED + name]
    if vips:
        info["vipAddress"] = vips
    if svips:
        info["secureVipAddress"] = svips
    info.update(
        isCoordinatingDiscoveryServer="false",
        lastUpdatedTimestamp=str(registered),
        lastDirtyTimestamp=str(registered),
    )
    if action:
        info["actionType"] = action
    return info


def application(name: str, infos: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "instance": infos}


def applications(apps: list[dict[str, Any]], version: int, hashcode: str) -> dict[str, Any]:
    return {"versions__delta": str(version), "apps__hashcode": hashcode, "application": apps}


def reconcile_hash(statuses: Iterable[str]) -> str:
    """Eureka's apps__hashcode: STATUS_count_ for each status, in status-name order (e.g. "DOWN_1_UP_3_")."""
    counts = Counter(statuses)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


def render(root: str, obj: dict[str, Any], xml: bool) -> bytes:
    """`{root: obj}` as JSON, or as XML with `root` as the root element."""
    if not xml:
        return json.dumps({root: obj}, separators=(",", ":")).encode()
    out: list[str] = []
    _to_xml(root, obj, out)
    return "".join(out).encode()


def fragment(tag: str, obj: dict[str, Any], xml: bool) -> str:
    """One object as text: an XML element named `tag`, or a JSON value (for applications_body to assemble)."""
    if not xml:
        return json.dumps(obj, separators=(",", ":"))
    out: list[str] = []
    _to_xml(tag, obj, out)
    return "".join(out)


def applications_body(apps: list[tuple[str, list[str]]], version: int, hashcode: str, xml: bool) -> bytes:
    """What render("applications", applications(...)) gives, from instance fragments rendered beforehand."""
    if xml:
        parts = [f"<applications><versions__delta>{version}</versions__delta>",
                 f"<apps__hashcode>{_text_xml(hashcode)}</apps__hashcode>"]  # fmt: skip
        for name, fragments in apps:
            parts += [f"<application><name>{_text_xml(name)}</name>", *fragments, "</application>"]
        parts.append("</applications>")
    else:
        listed = ",".join(f'{{"name":{json.dumps(name)},"instance":[{",".join(f)}]}}' for name, f in apps)
        parts = [f'{{"applications":{{"versions__delta":{json.dumps(str(version))},',
                 f'"apps__hashcode":{json.dumps(hashcode)},"application":[{listed}]}}}}']  # fmt: skip
    return "".join(parts).encode()


def _text_xml(value: Any) -> str:
    return escape(_NOT_XML_CHARS.sub("", str(value)))


def _to_xml(tag: str, value: Any, out: list[str]) -> None:
    """XStream's shape, written as text (several times faster than building an ElementTree)."""
    if not isinstance(value, dict):
        out.append(f"<{tag}>{_text_xml(value)}</{tag}>")
        return
    attrs = "".join(
        f" {k[1:]}={quoteattr(_NOT_XML_CHARS.sub('', str(v)))}" for k, v in value.items() if k.startswith("@")
    )
    out.append(f"<{tag}{attrs}>")
    for key, item in value.items():
        if key.startswith("@"):
            continue
        if key == "$":
            out.append(_text_xml(item))
        elif not _XML_NAME.fullmatch(key):  # a metadata key XML cannot name; JSON shows it
            continue
        elif isinstance(item, list):
            for one in item:
                _to_xml(key, one, out)
        else:
            _to_xml(key, item, out)
    out.append(f"</{tag}>")
