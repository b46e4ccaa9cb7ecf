"""The measured value of every check as a JUnit ``<testsuite>`` property, besides the
``<testcase>`` properties (``item.user_properties``) that pytest writes itself.

pytest's default family, xunit2, has no properties on testcases in its schema (that is why
``record_property`` warns there), and suite properties are what strict xunit2 readers keep.
pytest's public route to them, the ``record_testsuite_property`` fixture, does nothing under
pytest-xdist (pytest-dev/pytest#7767: workers have no JUnit writer, and the controller runs no
fixtures), and custom items request no fixtures. So the controller, which receives every record,
adds them to the file pytest has written, once it is written: the ``--junitxml`` path is a public
option, the file a documented format. Only the standard library is imported here.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

import pytest

# Characters XML 1.0 cannot hold, written as pytest's JUnit writer writes them (#x1B).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def report_path(config: pytest.Config) -> str | None:
    """The file pytest's JUnit writer writes (as it resolves ``--junitxml`` when pytest starts),
    or None: no ``--junitxml``, junitxml disabled (``-p no:junitxml``), or an xdist worker."""
    path = config.getoption("--junitxml", None)
    if not path or hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("junitxml"):
        return None
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(path))))


def suite_property(record: dict) -> tuple[str, str]:
    """``safety[lenet]::pgd_linf[eps=0.1]`` -> ``PASS: robust accuracy 0.9310 (need >= ...)``."""
    name = f"safety[{record['model']}]::{record['check']}"
    if record.get("skipped"):
        return name, f"skipped: {record['skipped']}"
    relation = ">=" if record["bound"] == "min" else "<="
    value = "nan" if record["value"] is None else f"{record['value']:.4f}"
    params = ", ".join(f"{key}={value}" for key, value in record["params"].items())
    point = (record.get("artifacts") or {}).get("operating_point")
    if isinstance(point, dict):  # ood_fpr95: the score threshold a deployment uses
        params += f", score threshold={point['threshold']:.6g} at TPR {point['tpr']:g}"
    return name, (
        f"{'PASS' if record['passed'] else 'FAIL'}: {record['metric']} {value} "
        f"(need {relation} {record['threshold']:.4f}; n={record['n']}"
        f"{'; ' + params if params else ''})"
    )


def add_suite_properties(path: str, properties: list[tuple[str, str]]) -> None:
    """Append ``properties`` to the ``<properties>`` of the file's (first) ``<testsuite>``, where
    pytest puts its own suite properties, and write the file back as pytest writes it."""
    if not properties or not os.path.isfile(path):
        return
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return
    holder = suite.find("properties")
    if holder is None:
        holder = ET.Element("properties")
        suite.insert(0, holder)  # before the testcases, as pytest places it
    for name, value in properties:
        value = _NOT_XML.sub(lambda match: f"#x{ord(match.group()):02X}", value)
        holder.append(ET.Element("property", name=name, value=value))
    with open(path, "w", encoding="utf-8") as file:
        file.write('<?xml version="1.0" encoding="utf-8"?>')
        file.write(ET.tostring(root, encoding="unicode"))
