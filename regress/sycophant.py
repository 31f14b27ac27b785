"""An answer whose every comparison succeeds: the probe `onelab regress` hands to each test.

This file is also the text the probe submission runs (it is pasted into each solution cell of
that submission, inside the grading sandbox), so it uses the standard library only and binds
nothing but underscore names. A test that passes when the learner's names are bound to this
object checks how the answer compares, not what it is; `float(x) == 42.0`, `type(x) is int`
or `np.allclose(np.asarray(x, dtype=float), ...)` cannot be fooled by it.
"""

import dis as _dis
import sys as _sys


class _OneLabAlwaysEqual:
    """Equal to anything, true, and the result of anything done to it.

    numpy and torch comparison functions (`np.allclose`, `torch.equal`, ...) are answered by
    the object too, through their dispatch protocols, as an answer written to cheat them
    would. Conversions to real numbers are honest and useless: `float()` is nan, `int()` a
    number no test expects, `len()` 1, so a test that converts first is not fooled.
    """

    __slots__ = ()
    _UNPACK = _dis.opmap["UNPACK_SEQUENCE"]
    _UNPACK_EX = _dis.opmap["UNPACK_EX"]
    _EXTENDED = _dis.opmap["EXTENDED_ARG"]

    def __eq__(self, other):
        return True

    __lt__ = __le__ = __gt__ = __ge__ = __contains__ = __eq__

    def __ne__(self, other):
        return False

    def __bool__(self):
        return True

    __hash__ = object.__hash__

    def __len__(self):
        return 1

    def __float__(self):
        return float("nan")

    def __complex__(self):
        return complex(float("nan"), 0.0)

    def __int__(self):
        return -987654321

    __index__ = __int__

    def _same(self, *args, **kwargs):
        return self

    __call__ = __getitem__ = __enter__ = _same
    __neg__ = __pos__ = __abs__ = __invert__ = _same
    __round__ = __trunc__ = __floor__ = __ceil__ = _same
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _same
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _same
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _same
    __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = _same

    def __divmod__(self, other):
        return self, self

    __rdivmod__ = __divmod__

    def __exit__(self, *exc):
        return False

    def __setitem__(self, key, value):
        pass

    def __delitem__(self, key):
        pass

    def __setattr__(self, name, value):
        pass

    def __getattr__(self, name):
        # Private and special names (IPython's _repr_*_, numpy's __array_interface__, copy's
        # __deepcopy__) are looked up by libraries that expect the real protocol or nothing.
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __iter__(self):
        # Bounded, and as long as an unpacking asks for (`a, b = fit(x, y)`): the caller's
        # current instruction says how many names it is about to fill.
        try:
            frame = _sys._getframe(1)
            code, at = frame.f_code.co_code, frame.f_lasti
            count = 1
            if code[at] == self._UNPACK:
                count = code[at + 1]
            elif code[at] == self._UNPACK_EX:  # names before the star, and after it
                after = code[at - 1] if at >= 2 and code[at - 2] == self._EXTENDED else 0
                count = code[at + 1] + after
        except Exception:  # noqa: BLE001 - another interpreter: one item it is
            count = 1
        return iter([self] * min(count, 64))

    def __repr__(self):
        return "<always-equal answer>"

    def __format__(self, spec):
        try:
            return format(float("nan"), spec)
        except (TypeError, ValueError):
            return repr(self)

    def __array__(self, dtype=None, copy=None):
        import numpy

        out = numpy.empty((), dtype=object)
        out[()] = self
        return out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return (self,) * ufunc.nout if ufunc.nout > 1 else self

    def __array_function__(self, func, types, args, kwargs):
        return self

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return cls()
