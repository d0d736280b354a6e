#!/usr/bin/env python3
"""Renders reference chat prompts with jinja2 the way transformers' apply_chat_template
does (trim_blocks, lstrip_blocks, loopcontrols), for tests/tokenizer/test_chat.c.

    python3 tests/tokenizer/gen_chat.py           # write tests/tokenizer/chat_expected.json
    python3 tests/tokenizer/gen_chat.py --check   # re-render and compare with the committed file

Templates:
  qwen3     the real template from tests/fixtures/tokenizers/qwen3/tokenizer_config.json
  qwen2.5   Qwen2.5-Instruct's template (transcribed below, tools part included)
  qwen2     Qwen2-Instruct's template (transcribed)
  llama3    Meta-Llama-3-Instruct's template (transcribed)
  llama3.1  Llama 3.1/3.2 Instruct's template (transcribed; without strftime_now, so the
            date is the template's default "26 Jul 2024")
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
          "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

CASES = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "user", "content": "Solve x+1=2"},
     {"role": "assistant", "content": "<think>\nx = 2 - 1\n</think>\n\nx = 1"},
     {"role": "user", "content": "And x+2=5?"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "<think>\n\nr2\n\n</think>\n\n\nA2"}],
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning_content": "\nthought\n"}],
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "plain answer"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "second"}],
    [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "calling"},
     {"role": "tool", "content": "{\"t\": 21}"}, {"role": "tool", "content": "{\"rain\": false}"},
     {"role": "assistant", "content": "21 degrees, dry"}, {"role": "user", "content": "thanks"}],
    [{"role": "user", "content": "<tool_response>\nx\n</tool_response>"}, {"role": "assistant", "content": "ok"}],
    [{"role": "system", "content": "  spaced system \n"}, {"role": "user", "content": "\t padded user  \n\n"},
     {"role": "assistant", "content": " reply "}, {"role": "system", "content": "late system"},
     {"role": "user", "content": "again"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "日本語で答えて。😀 Привет <|im_end|> literal"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x</think>y</think>z<think>w"},
     {"role": "user", "content": "b"}, {"role": "assistant", "content": "pre<think>mid</think>post"}],
]

TOOL_KINDS = {"qwen3", "qwen2.5"}


def render(env, tmpl, msgs, gen, thinking):
    kw = {"messages": msgs, "add_generation_prompt": gen, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    if thinking is not None:
        kw["enable_thinking"] = thinking
    return env.from_string(tmpl).render(**kw)


def build():
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, **k: json.dumps(x, ensure_ascii=False)
    cfg = json.load(open(os.path.join(ROOT, "tests", "fixtures", "tokenizers", "qwen3", "tokenizer_config.json")))
    templates = {"qwen3": cfg["chat_template"], "qwen2.5": QWEN25, "qwen2": QWEN2, "llama3": LLAMA3, "llama3.1": LLAMA31}
    out = []
    for kind, tmpl in templates.items():
        for ci, msgs in enumerate(CASES):
            if kind not in TOOL_KINDS and any(m["role"] == "tool" for m in msgs):
                continue
            if kind != "qwen3" and any("reasoning_content" in m for m in msgs):
                continue
            for gen in (False, True):
                for thinking in ((None, False) if kind == "qwen3" else (None,)):
                    out.append({"kind": kind, "case": ci, "add_generation_prompt": gen,
                                "enable_thinking": thinking is not False, "messages": msgs,
                                "text": render(env, tmpl, msgs, gen, thinking)})
    return json.dumps(out, ensure_ascii=False, indent=1) + "\n"


def main():
    try:
        data = build()
    except ImportError:
        print("error: jinja2 is missing\nhint: pip install jinja2 (tools/test.sh puts it in .venv)", file=sys.stderr)
        return 1
    path = os.path.join(HERE, "chat_expected.json")
    if "--check" in sys.argv:
        same = open(path, encoding="utf-8").read() == data
        print("chat_expected.json: %s" % ("matches jinja2" if same else "DIFFERS from jinja2"))
        return 0 if same else 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(data)
    print("wrote %s (%d renderings)" % (path, data.count('"kind"')))
    return 0


if __name__ == "__main__":
    sys.exit(main())
