"""Where a learner server's start goes: run inside the learner image (docs/benchmarks.md).

    docker run --rm --network none --read-only --user 1000:1000 --tmpfs /tmp:mode=1777 \
      --tmpfs /home/learner:uid=1000,gid=1000 -v $PWD/docs/scripts/server_startup.py:/s.py:ro \
      onelab/learner:TAG python /s.py
"""
import json
import os
import re
import subprocess
import time
import urllib.request


def once(extra_env, args):
    env = {**os.environ, **extra_env, "PYTHONPROFILEIMPORTTIME": "1"}
    t = time.monotonic()
    p = subprocess.Popen(["jupyter", "server", "--no-browser", "--port=8888",
                          "--IdentityProvider.token=t", *args], env=env, cwd="/home/learner",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = []
    import threading
    threading.Thread(target=lambda: [err.append(l) for l in p.stderr], daemon=True).start()
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8888/api/status",
                                   headers={"Authorization": "token t"}), timeout=2)
            break
        except OSError:
            time.sleep(0.05)
    answered = time.monotonic() - t
    p.terminate(); p.wait(20)
    tops = {}
    for l in err:
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", l)
        if m and len(m.group(3)) == 1:  # top-level imports only
            name = m.group(4).split(".")[0]
            tops[name] = tops.get(name, 0) + int(m.group(2)) / 1e6
    top = sorted(tops.items(), key=lambda kv: -kv[1])[:12]
    return {"answered_s": round(answered, 2), "imports_s": round(sum(tops.values()), 2),
            "top": [(k, round(v, 2)) for k, v in top]}
res = {}
res["all"] = once({}, [])
res["all_again"] = once({}, [])
res["no_nbgrader_no_onelab_ext"] = once({}, [
    "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.assignment_list': False, 'nbgrader.server_extensions.validate_assignment': False, 'onelab_assignments': False, 'onelab_kernels': False}"])
res["server_only"] = once({}, ["--ServerApp.jpserver_extensions={'jupyterlab': False, 'nbgrader.server_extensions.assignment_list': False, 'nbgrader.server_extensions.validate_assignment': False, 'onelab_assignments': False, 'onelab_kernels': False, 'jupyter_lsp': False, 'notebook': False, 'notebook_shim': False, 'jupyter_server_terminals': False}"])
print(json.dumps(res))
