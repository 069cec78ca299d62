"""Chat templates: the Jinja template a GGUF carries (tokenizer.chat_template),
rendered with a real, sandboxed Jinja engine the way Hugging Face renders it."""
from __future__ import annotations

import datetime

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import RealmError

# What llama.cpp falls back to when a GGUF carries no template.
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _raise(msg):
    raise TemplateError(msg)


def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


_ENV = _env()
_cache: dict[str, object] = {}


def render(template: str | None, messages: list[dict], add_generation_prompt: bool = True,
           bos_token: str = "", eos_token: str = "", **extra) -> str:
    """Render messages ([{'role':..., 'content':...}, ...]) into the prompt text."""
    src = template or CHATML
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise RealmError(f"each chat message needs a 'role' (got {m!r})")
    try:
        tpl = _cache.get(src)
        if tpl is None:
            tpl = _cache[src] = _ENV.from_string(src)
        return tpl.render(messages=messages, add_generation_prompt=add_generation_prompt,
                          bos_token=bos_token, eos_token=eos_token, **extra)
    except TemplateError as e:
        raise RealmError(f"the model's chat template failed: {e}") from None
