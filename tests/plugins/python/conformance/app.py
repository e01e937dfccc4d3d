"""The conformance step, in Python (componentize-py). The same step as the Rust
plugin in tests/plugins/conformance: tests/tests/conformance.rs runs the same cases
against both."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, kv, log, types

INPUT_SCHEMA = {
    "type": "object",
    "required": ["name", "locale"],
    "properties": {
        "name": {"type": "string"},
        "locale": {"enum": ["de", "en"]},
        "points": {"type": "integer"},
    },
}

CONFIG_SCHEMA = {"type": "object", "properties": {"bonus": {"type": "integer"}}}


class Handler(exports.Handler):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="conformance-python",
            version="1.0.0",
            description="Greets in German or English and counts greetings per name",
            config_schema=json.dumps(CONFIG_SCHEMA),
            input_schema=json.dumps(INPUT_SCHEMA),
            output_schema=None,
            hosts=[],
            secrets=[],
            kv=True,
        )

    def run(self, invocation: types.Invocation, config_text: str, input_text: str) -> str:
        settings = json.loads(config_text) or {}
        data = json.loads(input_text)
        name = data.get("name", "")
        locale = data.get("locale", "")
        key = f"greeted/{name}"
        if name == "":
            raise Err(types.PluginError_InvalidInput("`name` must not be empty"))
        if name == "fatal":
            raise Err(types.PluginError_Fatal("Kunde gesperrt: Müller & Söhne"))
        if name == "retry" and invocation.attempt < 2:
            # Written, then discarded with the failed attempt.
            kv.set(key, b"100")
            raise Err(types.PluginError_Retryable("the ERP is busy, try again"))
        stored = kv.get(key)
        count = (int(stored.decode()) if stored is not None else 0) + 1
        kv.set(key, str(count).encode())
        log.log(log.Level.INFO, "greeted", [("locale", locale)])
        greeting = f"Grüß Gott, {name}!" if locale == "de" else f"Hello, {name}!"
        return json.dumps(
            {
                "greeting": greeting,
                "total": data.get("points", 0) + settings.get("bonus", 0),
                "count": count,
                "attempt": invocation.attempt,
                "step": invocation.step,
                "bonus_from_import": config.get("bonus"),
            },
            ensure_ascii=False,
        )
