"""chat_template_kwargs (llama-server's request field; Realm.chat(..., chat_template_kwargs=)):
template variables beyond the messages, such as Qwen3's enable_thinking switch, reach the
model's own Jinja template; names the chat sets itself, or that are no names, are refused."""
from __future__ import annotations

import openai
import pytest

from realm_web.errors import RealmError
from server_helpers import start_thread_server

# Qwen3's thinking switch, in the shape of its template: history replies lose their <think>
# part; enable_thinking=false opens the reply with an empty think block.
THINKING = """{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.role == 'assistant' %}{{ m.content.split('</think>')[-1].lstrip('\\n') }}{% else %}{{ m.content }}{% endif %}<|im_end|>
{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif %}{% endif %}"""

MSGS = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
        {"role": "user", "content": "And 3+3?"}]


@pytest.fixture(scope="module")
def model_path(default_model_path):
    import refmodels
    return refmodels.with_chat_template(THINKING, default_model_path)


def test_realm_passes_template_variables(model_path):
    from realm_web import Realm
    r = Realm.load(str(model_path), n_ctx=256)
    try:
        on = r.apply_chat_template(MSGS)
        off = r.apply_chat_template(MSGS, chat_template_kwargs={"enable_thinking": False})
        assert "<think>" not in on and "add" not in on             # the history's reasoning is dropped
        assert off == on + "<think>\n\n</think>\n\n"
        assert r.chat(MSGS, max_tokens=4, temperature=0, chat_template_kwargs={"enable_thinking": False})
        for bad in ({"messages": []}, {"add_generation_prompt": False}, {"not a name": 1}, ["enable_thinking"]):
            with pytest.raises(RealmError, match="chat_template_kwargs"):
                r.apply_chat_template(MSGS, chat_template_kwargs=bad)
    finally:
        r.close()


def test_server_takes_chat_template_kwargs(model_path):
    srv = start_thread_server(no_auth=True, models=[("thinker", str(model_path))])
    try:
        c = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0, timeout=120)
        kw = dict(model="thinker", messages=MSGS, max_tokens=2, temperature=0)
        on = c.chat.completions.create(**kw).usage.prompt_tokens
        off = c.chat.completions.create(extra_body={"chat_template_kwargs": {"enable_thinking": False}}, **kw)
        from realm_web import Realm
        r = Realm.load(str(model_path), n_ctx=256)
        try:
            extra = len(r.tokenize("<think>\n\n</think>\n\n", add_special=False))
        finally:
            r.close()
        assert off.usage.prompt_tokens == on + extra
        for bad in ([1], {"eos_token": "x"}):
            with pytest.raises(openai.BadRequestError) as e:
                c.chat.completions.create(extra_body={"chat_template_kwargs": bad}, **kw)
            assert e.value.body["param"] == "chat_template_kwargs", e.value.body
    finally:
        srv.stop()
