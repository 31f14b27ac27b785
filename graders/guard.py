"""Runs INSIDE the grading kernel, before any learner code: an attestation of what each cell ran.

Shipped as text and run by the kernel as an IPython ``exec_files`` start-up file. It installs a
Python audit hook (audit hooks cannot be removed once added) that, for every notebook cell the
kernel compiles and executes, writes a signed record to a pipe only the grading runner reads:

    seq|R|guard|mark or no-mark||<hmac>                                     (installed)
    seq|C|<cell file>|<sha256 of the compiled text>|<tamper flags>|<hmac>   (compiled)
    seq|X|<cell file>||<tamper flags>|<hmac>                                (executed)
    seq|D|<cell file>|<value of the last expression>|<tamper flags>|<hmac>  (completed)

The runner gives a test cell its points only if the kernel compiled exactly the cell's source
(after IPython's stock transforms), executed it, ran it to its end without an exception (the D
record of the completion mark, see below), and nothing had been tampered with: input or AST
transformers added, execution or traceback machinery, the compiler or the modules the cell
machinery looks names up in replaced, custom exception handlers, tracing or profiling,
introspection that could reach this hook (gc referrers, other threads' frames, raw memory).
Whether a test passed never rests on what the kernel reports (its messages, displays and
tracebacks), which the learner's code can rewrite. The key arrives on a pipe that is read once
and closed; the hook touches no object whose methods the learner could have replaced, so their
code never runs inside it. Anything it cannot see (e.g. a test helper monkeypatched to always
pass, or an answer object whose comparisons always succeed) is out of its reach.
"""


def _onelab_guard():
    import _hashlib
    import _thread
    import ast as _ast
    import binascii
    import builtins
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
    _getattr = getattr

    MARK = "onelab.cell-completed"
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

    # -- the completion mark --------------------------------------------------------------
    # Every cell gets one more top-level statement, last: a call of sys.audit(MARK) that this
    # hook attests (a "D" record). IPython runs a cell's statements in order and stops at the
    # first that raises, so the mark runs only when every statement before it completed: a
    # test cell's pass rests on this record, never on what the kernel reports (its messages,
    # displays and tracebacks are the learner's to tamper with). When the cell ends with an
    # expression, the mark wraps it and records its value (partial credit), and IPython still
    # displays it. Line numbers are the original's, so tracebacks look as they always did.
    Expr, Call, Attribute, Name, Constant = (_ast.Expr, _ast.Call, _ast.Attribute, _ast.Name,
                                             _ast.Constant)
    Tuple, Subscript, NamedExpr, Load, Store = (_ast.Tuple, _ast.Subscript, _ast.NamedExpr,
                                                _ast.Load, _ast.Store)
    copy_location, fix_locations = _ast.copy_location, _ast.fix_missing_locations

    class OneLabCompletionMark(_ast.NodeTransformer):
        def visit(self, node):
            body = _getattr(node, "body", None)
            if _type(body) is not _list or not body:
                return node
            last = body[-1]
            audit = Attribute(Call(Name("__import__", Load()), [Constant("sys")], []), "audit",
                              Load())
            if _type(last) is Expr:
                keep = NamedExpr(Name("__onelab_value__", Store()), last.value)
                mark = Call(audit, [Constant(MARK), Name("__onelab_value__", Load())], [])
                body[-1] = copy_location(Expr(Subscript(Tuple([keep, mark], Load()),
                                                        Constant(0), Load())), last)
            else:
                mark = Expr(Call(audit, [Constant(MARK)], []))
                mark.lineno = mark.end_lineno = _getattr(last, "end_lineno", None) or last.lineno
                mark.col_offset = mark.end_col_offset = 0
                body.append(mark)
            fix_locations(node)
            return node

    marker = OneLabCompletionMark()
    marker_visit = OneLabCompletionMark.__dict__["visit"]
    shell.ast_transformers.append(marker)

    def code_of(name):
        for klass in type(shell).__mro__:
            fn = klass.__dict__.get(name)
            if fn is not None:
                return getattr(fn, "__code__", None)
        return None

    run_code_co, run_nodes_co, run_cell_co = (code_of("run_code"), code_of("run_ast_nodes"),
                                              code_of("run_cell_async"))
    can_mark = None not in (run_code_co, run_nodes_co, run_cell_co)
    nodes_vars = run_nodes_co.co_varnames if run_nodes_co is not None else ()
    check_last = "to_run" in nodes_vars and "node" in nodes_vars
    main_thread, get_ident, getframe = _thread.get_ident(), _thread.get_ident, sys._getframe
    # Cells are compiled under ipykernel's own folder, /tmp/ipykernel_<pid>/<hash>.py (not, say,
    # .../site-packages/ipykernel_launcher.py, the bottom frame of a kernel started on its own).
    try:
        from ipykernel.compiler import get_tmp_directory

        cell_dir = get_tmp_directory() + os.sep
    except Exception:  # an older ipykernel: its cells still live in an ipykernel_ folder
        cell_dir = ""

    def is_cell(fn):
        if _type(fn) is not _str:
            return False
        if cell_dir:
            return fn.startswith(cell_dir)
        return "/ipykernel_" in fn and not fn.endswith("ipykernel_launcher.py")
    _float, _int, _bool, _NoneType = float, int, bool, type(None)
    mro_of = type.__dict__["__mro__"].__get__
    name_of = type.__dict__["__name__"].__get__
    float_repr, int_repr = float.__repr__, int.__repr__

    def describe(args):
        """The mark's recorded value, computed without running any of the learner's code:
        numbers by the built-in types' own methods, anything else by its type's name."""
        if _len(args) < 1:  # the cell did not end with an expression
            return "-"
        v = args[0]
        t = _type(v)
        if t is _NoneType:
            return "none"
        mro = mro_of(t)

        def has(k):  # by identity: `in` would call a metaclass's __eq__
            for m in mro:
                if m is k:
                    return True
            return False

        try:
            if has(_bool):
                return "n:" + ("True" if v else "False")
            if has(_float):
                return "n:" + float_repr(v)
            if has(_int):
                text = int_repr(v)
                return "n:" + text if _len(text) < 64 else "o:int"
        except _BaseException:
            return "o:number"
        name = name_of(t)
        return "o:" + (name if _type(name) is _str else "?").replace("|", "_")[:60]

    def mark_ok(frame):
        """The mark is genuine only when IPython itself ran it as the cell's last statement:
        main thread; called by IPython's own run_code, called by run_ast_nodes for its last
        node, called by run_cell_async; none of that machinery twice and no other cell's code
        anywhere below (so no learner code ran it from inside a statement, a callback, a
        signal handler or a thread)."""
        if not can_mark or get_ident() != main_thread:
            return False
        fn = frame.f_code.co_filename
        if not is_cell(fn):
            return False
        runner = frame.f_back
        nodes = runner.f_back if runner is not None else None
        cell = nodes.f_back if nodes is not None else None
        if (runner is None or runner.f_code is not run_code_co or nodes is None or
                nodes.f_code is not run_nodes_co or cell is None or
                cell.f_code is not run_cell_co):
            return False
        if check_last:
            loc = nodes.f_locals
            to_run = loc.get("to_run")
            if (_type(to_run) is not _list or not to_run or _type(to_run[-1]) is not _tuple or
                    to_run[-1][0] is not loc.get("node")):
                return False
        below = cell.f_back
        while below is not None:
            co = below.f_code
            if co is run_code_co or co is run_nodes_co or co is run_cell_co:
                return False
            name = co.co_filename
            if _type(name) is not _str or is_cell(name):
                return False
            below = below.f_back
        return True

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
    # The compiler and the modules whose globals the cell machinery looks up at run time
    # (ast.fix_missing_locations, interactiveshell.Module, compile, exec, ...): a replaced one
    # could run other code than the cell's, or drop its statements, before the mark.
    compiler = sh_dict.get("compile")
    compiler_classes = [("compile." + c.__name__ + ".", c.__dict__,
                         [(n, c.__dict__[n]) for n in ("__call__", "cache", "ast_parse",
                                                       "get_code_name", "format_code_name",
                                                       "extra_flags") if n in c.__dict__])
                        for c in type(compiler).__mro__] if compiler is not None else []
    watched_modules = []
    for modname in ("ast", "codeop", "IPython.core.interactiveshell", "IPython.core.compilerop"):
        mod = sys.modules.get(modname)
        if mod is not None:
            md = _getattr_obj(mod, "__dict__")
            watched_modules.append((modname + ".", md, list(md.items()), frozenset(md)))
    # AST node classes: a property on ast.Assert.test would compile every assert as another
    ast_classes = [(k, v.__dict__, list(v.__dict__.items()))
                   for k, v in _getattr_obj(_ast, "__dict__").items()
                   if _type(v) is type and issubclass(v, _ast.AST)]
    builtins_dict = builtins.__dict__
    builtins_snap = [(n, builtins_dict.get(n)) for n in ("compile", "exec", "eval")]
    marker_class_dict = OneLabCompletionMark.__dict__
    marker_dict = _getattr_obj(marker, "__dict__")
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
        if sh_dict.get("compile") is not compiler:
            bad.append("shell.compile")
        if (_type(marker) is not OneLabCompletionMark or
                marker_class_dict.get("visit") is not marker_visit or _len(marker_dict)):
            bad.append("completion-mark")
        for prefix, md, items, keys in watched_modules:
            if _len(md) != _len(keys):
                for k in md:
                    if _type(k) is not _str or (not k.startswith("__") and k not in keys):
                        bad.append(prefix + "globals")
                        break
            for k, v in items:
                if md.get(k) is not v:
                    bad.append(prefix + k)
                    break
        for k, cd, items in ast_classes:
            if _len(cd) != _len(items):
                bad.append("ast." + k)
                continue
            for n, v in items:
                if cd.get(n) is not v:
                    bad.append("ast." + k)
                    break
        for name, fn in builtins_snap:
            if builtins_dict.get(name) is not fn:
                bad.append("builtins." + name)
        for prefix, proxy, snap in shell_classes + kernel_classes + compiler_classes:
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
                    if is_cell(fn):
                        if _type(src) is _str:
                            src = src.encode("utf-8", "surrogatepass")
                        if _type(src) is _bytes:
                            emit("C", fn, sha256(src).hexdigest(), flags())
            elif event == "exec":
                if args and _type(args[0]) is _code:
                    fn = args[0].co_filename
                    if is_cell(fn):
                        emit("X", fn, "", flags())
            elif event == MARK:
                frame = getframe(1)  # whoever called sys.audit
                if mark_ok(frame):
                    emit("D", frame.f_code.co_filename, describe(args), flags())
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
    emit("R", "guard", "mark" if can_mark else "no-mark", [])


_onelab_guard()
del _onelab_guard
