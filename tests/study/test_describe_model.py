"""`pidflow describe-model MODEL`: the prompt template, token roles and pooling a user needs to pool their
own activations as pidflow does, from config.json (no weights): the template equals the loaded adapter's."""

from __future__ import annotations

import json

from app.cli import main, model_description


def test_describe_model_says_the_template_roles_and_layers_of_the_demo(capsys):
    from pidcore.pipeline.analysis import _adapter

    adapter = _adapter("demo")
    info = model_description("demo")
    assert info["prompt_template"] == adapter.prompt_template == "<image>\n{question}"
    assert (info["family"], info["decoder_layers"], info["pooled_layers"]) == ("LLaVA-1.5", adapter.num_layers, 7)
    assert info["hidden_size"] == adapter.model.config.text_config.hidden_size == 128
    assert info["knockout_edges"] == ["image->question", "image->last", "question->last", "last->last"]
    assert set(info["token_roles"]) == {"image", "question", "answer"}
    assert main(["describe-model", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == info
    assert main(["describe-model", "demo"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("demo: LLaVA-1.5 (llava), 6 decoder layers -> 7 pooled layers x 128 features per source")
    assert "  <image>\n  {question}\n" in text and "question: the tokens of '{question}'" in text


def test_describe_model_of_an_unknown_model_is_a_message(capsys):
    assert main(["describe-model", "nobody/nothing-here"]) == 2
    assert "no config.json for 'nobody/nothing-here' here" in capsys.readouterr().err
