"""HTTP routes, one module per resource.

Importing this package replaces Starlette's `int` path convertor (before any
route compiles its path): Python's int() refuses strings of more than 4,300
digits, so `/songs/<4,301 digits>` was a 500 raised while routing, before
auth. A path id too long to be a 64-bit id converts to one past the largest,
which every `{...:int}` parameter's `le=MAX_ID` refuses with a 422.
"""

from starlette.convertors import IntegerConvertor, register_url_convertor

MAX_ID_DIGITS = 19  # 2**63 - 1 has 19 digits
TOO_LARGE = 2**63  # one past the largest id: out of range for every id parameter


class BoundedIntegerConvertor(IntegerConvertor):
    def convert(self, value: str) -> int:
        digits = value.lstrip("0") or "0"
        return TOO_LARGE if len(digits) > MAX_ID_DIGITS else int(digits)


register_url_convertor("int", BoundedIntegerConvertor())
