"""In-cluster login: the API server's address comes from KUBERNETES_SERVICE_HOST/PORT, as client-go does.

Found on the real node: kopf's default names https://kubernetes.default.svc, which needs cluster DNS. On a
cluster without it the operator pod crash-looped on 'Temporary failure in name resolution'.
"""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from jobworker_operator import apply


def _service_account(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t", ca_path="/ca.crt")


def test_in_cluster_login_uses_the_service_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "login_with_service_account", _service_account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = apply.login()
    assert info.server == "https://10.0.0.1:443"
    assert (info.token, info.ca_path) == ("t", "/ca.crt")


def test_an_ipv6_service_host_is_bracketed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "login_with_service_account", _service_account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    assert apply.login().server == "https://[fd00::1]:6443"


def test_without_the_service_variables_kopfs_address_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "login_with_service_account", _service_account)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    assert apply.login().server == "https://kubernetes.default.svc"
