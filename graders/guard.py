"""Runs INSIDE the grading kernel, before any learner code: an attestation of what each cell ran.

Shipped as text and run by the kernel as an IPython ``exec_files`` start-up file. It installs a
Python audit hook (audit hooks cannot be removed once added) that, for every notebook cell the
kernel compiles and executes, writes a signed record to a pipe only the grading runner reads:

    seq|C|<cell file>|<sha256 of the compiled text>|<tamper flags>|<hmac>   (compiled)
    seq|X|<cell file>||<tamper flags>|<hmac>                                (executed)

The runner gives a test cell its points only if the kernel compiled exactly the cell's source
(after IPython's stock transforms), executed it, and nothing had been tampered with: input or
AST transformers added, execution or traceback machinery replaced, custom exception handlers,
tracing or profiling, introspection that could reach this hook (gc referrers, other threads'
frames, raw memory). The key arrives on a pipe that is read once and closed; the hook touches no
object whose methods the learner could have replaced, so their code never runs inside it.
Anything it cannot see (e.g. a test helper monkeypatched to always pass) is out of its reach.
"""


def _onelab_guard():
    import _hashlib
    import binascii
    import os
    import sys
    import threading
    import types

    # Every name the hook uses is bound here, in its closure: the hook's globals are the
    # learner's namespace, where `len` or `str` could be anything by the time it runs.
    _type, _len, _zip, _list, _str, _bytes, _tuple = (type, len, zip, list, str, bytes, tuple)
    _BaseException = BaseException
    _code = types.CodeType
    _getattr_obj = object.__getattribute__

    fds = os.environ.get("ONELAB_GUARD_FDS", "")
    if not fds:
        return
    rfd, wfd = (int(x) for x in fds.split(","))
    key = b""
    while len(key) < 32:
        chunk = os.read(rfd, 32 - len(key))
        if not chunk:
            break
        key += chunk
    os.close(rfd)

    shell = get_ipython()  # noqa: F821 - run by IPython, which defines it
    kernel = getattr(shell, "kernel", None)
    hmac_digest = _hashlib.hmac_digest
    sha256 = _hashlib.openssl_sha256
    hexlify = binascii.hexlify
    write = os.write
    gettrace, getprofile = sys.gettrace, sys.getprofile
    threading_dict = threading.__dict__

    def lists_of(obj, names):
        for name in names:  # traitlets make defaults on first access: make them now
            try:
                getattr(obj, name)
            except Exception:
                pass
        d = _getattr_obj(obj, "__dict__")
        tv = d.get("_trait_values", {})
        out = []
        for name in names:
            value = d[name] if name in d else tv.get(name)
            out.append((name, value, tuple(value) if type(value) is list else None))
        return d, tv, out

    sh_dict, sh_traits, sh_lists = lists_of(
        shell, ["input_transformers_post", "input_transformers_cleanup", "ast_transformers"])
    tm = shell.input_transformer_manager
    tm_dict, _, tm_lists = lists_of(tm, ["cleanup_transforms", "line_transforms",
                                         "token_transformers"])
    # shell.events callbacks are not watched: honest libraries add them (matplotlib's inline
    # backend flushes figures post_execute), and none can make a test pass: an error a test
    # raised is already shown (through the watched showtraceback) before post_run_cell, and
    # a pre_run_cell callback that stops the cell leaves it unexecuted, which is attested.
    watched = ["run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell",
               "transform_ast", "showtraceback", "_showtraceback", "showsyntaxerror",
               "showindentationerror", "get_exception_only", "should_run_async", "_run_cell",
               "ex", "ev"]
    shell_own = [(n, sh_dict.get(n)) for n in watched]  # ipykernel sets some per instance
    shell_classes = [(c.__name__ + ".", c.__dict__,
                      [(n, c.__dict__[n]) for n in watched if n in c.__dict__])
                     for c in type(shell).__mro__]
    kernel_classes = []
    k_dict, handlers, handlers_snap, kernel_own = {}, None, None, []
    if kernel is not None:
        for c in type(kernel).__mro__:
            snap = [(n, c.__dict__[n]) for n in ("do_execute", "execute_request",
                                                  "dispatch_shell", "process_one",
                                                  "send_response") if n in c.__dict__]
            kernel_classes.append(("kernel." + c.__name__ + ".", c.__dict__, snap))
        k_dict = _getattr_obj(kernel, "__dict__")
        kernel_own = [(n, k_dict.get(n)) for n in ("do_execute", "execute_request")]
        handlers = k_dict.get("shell_handlers")
        if type(handlers) is dict:
            handlers_snap = list(handlers.items())
    custom_exc_default = sh_dict.get("custom_exceptions", sh_traits.get("custom_exceptions"))
    sticky = []
    seq = [0]
    suspicious = frozenset({
        "sys.addaudithook", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys._current_frames", "ctypes.string_at", "ctypes.wstring_at", "sys.setprofile",
        "sys.settrace"})
    tm_obj = tm

    def same(current, snapshot):
        if _type(current) is not _list or _len(current) != _len(snapshot):
            return False
        for a, b in _zip(current, snapshot):
            if a is not b:
                return False
        return True

    def flags():
        bad = _list(sticky)
        if gettrace() is not None:
            bad.append("tracing")
        if getprofile() is not None:
            bad.append("profiling")
        if threading_dict.get("_trace_hook") is not None:
            bad.append("thread-tracing")
        for d, tv, items in ((sh_dict, sh_traits, sh_lists), (tm_dict, {}, tm_lists)):
            for name, obj, snap in items:
                cur = d[name] if name in d else tv.get(name)
                if snap is not None and (cur is not obj or not same(cur, snap)):
                    bad.append(name)
        cur_tm = sh_dict.get("input_transformer_manager",
                             sh_traits.get("input_transformer_manager", tm_obj))
        if cur_tm is not tm_obj:
            bad.append("input_transformer_manager")
        for name, fn in shell_own:
            if sh_dict.get(name) is not fn:
                bad.append("shell." + name)
        for prefix, proxy, snap in shell_classes + kernel_classes:
            for name, fn in snap:
                if proxy.get(name) is not fn:
                    bad.append(prefix + name)
        for name, fn in kernel_own:
            if k_dict.get(name) is not fn:
                bad.append("kernel." + name)
        if handlers_snap is not None:
            if k_dict.get("shell_handlers") is not handlers or _len(handlers) != _len(
                    handlers_snap):
                bad.append("kernel.shell_handlers")
            else:
                for k, v in handlers_snap:
                    if handlers.get(k) is not v:
                        bad.append("kernel.shell_handlers")
                        break
        exc = sh_dict.get("custom_exceptions", sh_traits.get("custom_exceptions"))
        if exc is not custom_exc_default and not (_type(exc) is _tuple and _len(exc) == 0):
            bad.append("custom_exceptions")
        return bad

    def emit(kind, filename, digest, bad):
        seq[0] += 1
        msg = ("%d|%s|%s|%s|%s" % (seq[0], kind, filename, digest, ",".join(bad))).encode(
            "utf-8", "surrogatepass")
        data = msg + b"|" + hexlify(hmac_digest(key, msg, "sha256")) + b"\n"
        while data:
            data = data[write(wfd, data):]

    def hook(event, args):
        try:
            if event == "compile":
                if _len(args) >= 2:
                    src, fn = args[0], args[1]
                    if _type(fn) is _str and "/ipykernel_" in fn:
                        if _type(src) is _str:
                            src = src.encode("utf-8", "surrogatepass")
                        if _type(src) is _bytes:
                            emit("C", fn, sha256(src).hexdigest(), flags())
            elif event == "exec":
                if args and _type(args[0]) is _code:
                    fn = args[0].co_filename
                    if _type(fn) is _str and "/ipykernel_" in fn:
                        emit("X", fn, "", flags())
            elif event in suspicious:
                if event not in sticky:
                    sticky.append(event)
            elif event == "open":
                path = args[0] if args else None
                if _type(path) is _str and path.startswith("/proc/") and path.endswith("/mem"):
                    if "proc-mem" not in sticky:
                        sticky.append("proc-mem")
        except _BaseException:  # never raise: a traceback would lead into this frame
            pass

    sys.addaudithook(hook)


_onelab_guard()
del _onelab_guard
