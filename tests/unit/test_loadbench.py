"""`onelab bench load`'s parts that need no hub: the /proc watch, the API calls dealt out, the
report in both languages, and the refusals before anything is made."""

from __future__ import annotations

import os
import time

import pytest

from hub import loadbench
from onelab import i18n
from onelab.errors import OneLabError
from onelab.settings import load


def result(**over):
    r = {"url": "http://127.0.0.1:8000/", "started": "2026-12-01 10:00", "users": 3,
         "api_calls": 6, "spawn": 1, "login_s": 0.4, "class_s": 5.2, "total_s": 5.6,
         "logins_ok": 3, "servers_ready": 1, "ready_s": {"p50": 5.0, "p95": 5.0, "max": 5.0},
         "requests": {"login": {"count": 3, "statuses": {"302": 3}, "p50": 110.0, "p95": 120.0,
                                "max": 120.0},
                      "api_user": {"count": 3, "statuses": {"200": 2, "502": 1}, "p50": 6.0,
                                   "p95": 30.0, "max": 30.0}},
         "server_errors": {}, "no_answer": 0, "failures": {},
         "processes": {"hub": {"pid": 10, "cpu_s": 1.5, "rss_start_mib": 140.0,
                               "rss_peak_mib": 200.0, "rss_end_mib": 190.0}},
         "kept": False, "cleanup_problems": [], "passed": True}
    r.update(over)
    return r


def test_the_watch_counts_this_process_cpu_and_its_memory_peak():
    w = loadbench.Watch(os.getpid(), every=0.01)
    block = bytearray(64 * 1024 * 1024)  # touched: resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    del block
    got = w.stop()
    assert got["pid"] == os.getpid()
    assert got["cpu_s"] >= 0.15
    assert got["rss_peak_mib"] >= got["rss_start_mib"] + 50


def test_api_calls_are_dealt_out_evenly():
    assert loadbench._shares(300, 30) == [10] * 30
    shares = loadbench._shares(100, 30)
    assert sum(shares) == 100 and max(shares) - min(shares) == 1
    assert loadbench._shares(2, 5) == [1, 1, 0, 0, 0]


def test_the_report_names_each_kind_of_request_and_any_5xx_in_both_languages():
    failed = result(server_errors={"502": 1}, passed=False, failures={"load-02": "login: 500"})
    en = "\n".join(loadbench.render(failed))
    assert "login" in en and "302x3" in en and "200x2 502x1" in en
    assert "FAILED: 5xx responses 502x1" in en and "FAILED load-02: login: 500" in en
    ko = "\n".join(loadbench.render(failed, i18n.gettext("ko")))
    assert "내 사용자 정보" in ko and "실패: 5xx 응답 502x1" in ko and "own user" not in ko
    ok = "\n".join(loadbench.render(result()))
    assert "passed: no 5xx" in ok and "hub (pid 10): 1.5 CPU s" in ok


@pytest.mark.parametrize("users,calls,spawn", [(0, 10, 0), (3, -1, 0), (3, 10, 4)])
def test_bad_numbers_are_refused_before_anything_is_made(users, calls, spawn):
    with pytest.raises(OneLabError, match="--users must be at least 1"):
        loadbench.bench_load(load(path=None, environ={}), users=users, api_calls=calls,
                             spawn=spawn)
