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


def template_kwargs(kw) -> dict:
    """chat_template_kwargs (llama-server's request field, e.g. {"enable_thinking": False}) checked:
    names of template variables, none of those render() sets itself."""
    if kw is None:
        return {}
    if not isinstance(kw, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kw):
        raise RealmError("chat_template_kwargs must map template variable names to values")
    taken = {"messages", "add_generation_prompt", "bos_token", "eos_token", "template"} & set(kw)
    if taken:
        raise RealmError(f"chat_template_kwargs may not set {', '.join(sorted(taken))}: the chat sets it")
    return dict(kw)


def template_args(model) -> dict:
    """What render() needs from a model (a CoreModel): its template and its BOS/EOS texts."""
    meta = model.metadata()
    tokens = meta.get("tokenizer.ggml.tokens") or []

    def tok_text(key):
        i = meta.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""
    return {"template": meta.get("tokenizer.chat_template"), "bos_token": tok_text("tokenizer.ggml.bos_token_id"),
            "eos_token": tok_text("tokenizer.ggml.eos_token_id")}


def prompt_ids(model, text: str) -> list[int]:
    """A rendered chat prompt's token ids. The template already wrote the special
    tokens it wants (parse them, add none); BOS goes first only when the vocab asks
    for it and the template did not write it. Realm and the server both use this."""
    ids = model.tokenize(text, add_special=False, parse_special=True)
    info = model.info
    if info.add_bos and info.bos >= 0 and (not ids or ids[0] != info.bos):
        ids = [info.bos] + ids
    return ids
