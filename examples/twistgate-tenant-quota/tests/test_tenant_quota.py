from twistgate_tenant_quota import TenantQuota

YAML = """
routes: [{name: api, path: "/*", upstream: app}]
plugins:
  tenant_quota: {daily_limit: 2}
"""
ACME = {"X-Tenant": "acme"}


def test_no_tenant_is_400(make_gateway):
    gw = make_gateway(YAML, plugins={"tenant_quota": TenantQuota})
    response = gw.get("/x")
    assert response.code == 400 and gw.json(response)["error"] == "bad_request"


def test_remaining_then_429_until_the_next_day(make_gateway):
    gw = make_gateway(YAML, plugins={"tenant_quota": TenantQuota})
    left = [gw.get("/x", headers=ACME).headers.getRawHeaders("X-Quota-Remaining") for _ in range(2)]
    assert left == [["1"], ["0"]]
    refused = gw.get("/x", headers=ACME)
    assert refused.code == 429 and refused.headers.getRawHeaders("Retry-After") == ["86400"]
    gw.advance(86400)
    assert gw.get("/x", headers=ACME).code == 200


def test_counts_survive_a_reload(make_gateway):
    gw = make_gateway(YAML, plugins={"tenant_quota": TenantQuota})
    gw.get("/x", headers=ACME)
    gw.reload(YAML.replace("daily_limit: 2", "daily_limit: 3"))
    assert gw.get("/x", headers=ACME).headers.getRawHeaders("X-Quota-Remaining") == ["1"]


def test_under_twistd(twistd_gateway):  # the installed package, found through its entry point
    gw = twistd_gateway(YAML)
    assert gw.get("/x", headers=ACME).headers["x-quota-remaining"] == "1"
    gw.reload()  # SIGHUP: new instances, the same counts
    assert gw.get("/x", headers=ACME).headers["x-quota-remaining"] == "0"
    assert (gw.get("/x", headers=ACME).status, gw.upstream.requests[-1]["path"]) == (429, "/x")
