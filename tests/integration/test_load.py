"""A small class at once against the real hub: `onelab bench load` with 10 learners logging in
through the login form together, 100 REST API calls with their own cookies, 3 servers started
together. What a class would notice: every login works, every server comes up, no request
ends in a 5xx or goes unanswered; and the bench leaves no learner behind. No timing targets
here: speed is the benchmark's to measure (docs/benchmarks.md)."""

from __future__ import annotations

import json

import pytest

from hub.accounts import Accounts

pytestmark = pytest.mark.integration


def test_a_small_class_at_once_gets_no_5xx_and_every_login(platform):
    prefix = "tload-"
    out = platform.cli("bench", "load", "--users", "10", "--api-calls", "100", "--spawn", "3",
                       "--prefix", prefix, "--json", check=False)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    r = json.loads(out.stdout)
    assert r["passed"] and r["server_errors"] == {} and r["no_answer"] == 0, r
    assert r["logins_ok"] == 10 and r["failures"] == {}
    req = r["requests"]
    assert req["login"]["count"] == 10 and req["login"]["statuses"] == {"302": 10}
    assert req["api_user"]["count"] + req["api_status"]["count"] == 100
    assert req["api_user"]["statuses"] == {"200": req["api_user"]["count"]}
    assert r["servers_ready"] == 3 and req["spawn"]["count"] == 3
    assert req["server"]["statuses"] == {"200": 3}  # each reached their server through the proxy
    assert r["processes"]["hub"]["cpu_s"] > 0 and r["processes"]["proxy"]["rss_peak_mib"] > 0

    names = {f"{prefix}{i:02d}" for i in range(1, 11)}
    assert not names & {u["name"] for u in platform.admin().users()}
    s = platform.settings()
    assert not names & {a.name for a in Accounts(s.db_url).all()}
    from onelab import dockerdoor

    assert not dockerdoor.containers("learner", **{"onelab.instance": f"{platform.prefix}-learner",
                                                   "onelab.user": f"{prefix}01"})
