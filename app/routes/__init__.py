"""HTTP routes, one module per resource.

Importing this package replaces Starlette's `int` path convertor (before any
route compiles its path): Python's int() refuses strings of more than 4,300
digits, so `/songs/<4,301 digits>` was a 500 raised while routing, before
auth. A path id too long to be a 64-bit id converts to one past the largest,
which every `{...:int}` parameter's `le=MAX_ID` refuses with a 422.

Routes that take JSON bodies use `JSONBodyRoute`: bodies parsed by orjson, several
times faster than the standard library on the 518 numbers of a posted song.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.convertors import IntegerConvertor, register_url_convertor

MAX_ID_DIGITS = 19  # 2**63 - 1 has 19 digits
TOO_LARGE = 2**63  # one past the largest id: out of range for every id parameter


class BoundedIntegerConvertor(IntegerConvertor):
    def convert(self, value: str) -> int:
        digits = value.lstrip("0") or "0"
        return TOO_LARGE if len(digits) > MAX_ID_DIGITS else int(digits)


register_url_convertor("int", BoundedIntegerConvertor())


class JSONBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                # What only the standard library reads (NaN, Infinity) reaches validation,
                # which names it (not finite); what neither reads is FastAPI's JSON 422.
                self._json = json.loads(body)
        return self._json


class JSONBodyRoute(APIRoute):
    """An APIRoute whose request parses its JSON body with orjson (`JSONBodyRequest`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_fast_json(request: Request) -> Response:
            return await handler(JSONBodyRequest(request.scope, request.receive))

        return with_fast_json
