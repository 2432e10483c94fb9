"""Signs -> sentence: the prompt, the decoding call and the plumbing, with tiny LMs built from a
config and a word-level tokenizer made in the test (the language is not what is tested)."""

import json

import pytest
import torch

from sltdata.compose import collapse_repeats, compose_records, load_composer, make_prompt, PROMPT
from sltdata.errors import ConfigError

WORDS = ["translate", "these", "sign", "language", "glosses", "into", "one", "fluent", "english", "sentence.",
         "glosses:", "sentence:", "me", "go", "store", "hello", "book"]


def tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    from transformers import T5Config, T5ForConditionalGeneration

    path = tmp_path_factory.mktemp("t5") / "tiny-t5"
    tok = tokenizer()
    cfg = T5Config(vocab_size=len(tok), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("gpt") / "tiny-gpt"
    tok = tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                     bos_token_id=1, eos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_prompt_names_the_glosses_in_order_upper_cased():
    assert make_prompt(["me", "go", "Store"]) == PROMPT.format(glosses="ME GO STORE")
    assert make_prompt(["me"]).endswith("Glosses: ME\nSentence:")


def test_repeated_consecutive_signs_collapse_but_returns_stay():
    assert collapse_repeats(["me", "me", "go", "go", "me"]) == ["me", "go", "me"]


@pytest.mark.parametrize("which", ["t5", "gpt"])
def test_composer_decodes_greedily_what_the_model_generates(which, t5_dir, gpt_dir):
    path = t5_dir if which == "t5" else gpt_dir
    composer = load_composer(path, max_new_tokens=6)
    assert composer.encoder_decoder == (which == "t5")
    enc = composer.tokenizer(make_prompt(["me", "go", "store"]), return_tensors="pt")
    ids = composer.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                  max_new_tokens=6, do_sample=False, num_beams=1, pad_token_id=0)
    if which == "gpt":
        ids = ids[:, enc["input_ids"].shape[1]:]  # the causal LM's sentence follows its prompt
    expected = composer.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    assert composer.compose(["me", "go", "store"]) == expected
    assert composer.compose(["me", "go", "store"]) == composer.compose(["ME", "GO", "STORE"])  # deterministic
    assert composer.compose([]) == ""


def test_a_model_not_on_this_machine_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not available locally .* nothing is downloaded"):
        load_composer("sltdata-test/no-such-model-anywhere")
    with pytest.raises(ConfigError, match="not available locally"):
        load_composer(tmp_path / "empty")


def test_records_compose_per_sequence_of_windows_or_all_clips_in_order(t5_dir):
    composer = load_composer(t5_dir, max_new_tokens=4)
    rec = lambda inp, key, sign: {"input": inp, "key": key, "predictions": [{"label": sign, "score": 0.9}]}
    records = [rec("a.mp4", "a", "me"), rec("a.mp4", "a", "me"), rec("a.mp4", "a", "go"), rec("b.pose", "b", "hello")]
    per_seq = compose_records(records, composer, by_key=True)
    assert [(c["input"], c["key"], c["glosses"]) for c in per_seq] == [("a.mp4", "a", ["me", "go"]),
                                                                        ("b.pose", "b", ["hello"])]
    assert [c["sentence"] for c in per_seq] == [composer.compose(["me", "go"]), composer.compose(["hello"])]
    (all_clips,) = compose_records(records, composer)
    assert all_clips["glosses"] == ["me", "go", "hello"] and all_clips["key"] == ["a", "a", "a", "b"]
    text = compose_records([{"input": "x", "key": "x", "text": "me go"}], composer)[0]
    assert text["glosses"] == ["me go"]


def test_cli_compose_prints_the_prompt_and_the_sentence(t5_dir, capsys):
    from sltdata.cli import main

    assert main(["compose", "me go store", "--model", str(t5_dir), "--max-new-tokens", "4", "--show-prompt"]) == 0
    out = capsys.readouterr().out
    sentence = load_composer(t5_dir, max_new_tokens=4).compose(["me", "go", "store"])
    assert out == make_prompt(["me", "go", "store"]) + "\n" + sentence + "\n"
    assert main(["compose", "me", "--model", "sltdata-test/nope"]) == 2
    assert "not available locally" in capsys.readouterr().err


def test_predict_window_compose_gives_one_sentence_per_sequence(t5_dir, islr_store, tmp_path, capsys,
                                                                 one_torch_thread):
    """The plumbing end to end: windows of a store sequence -> signs -> the composed sentence."""
    from sltdata.cli import main
    from sltdata.predict import predict
    from sltdata.testing.train import islr_shards, tiny_islr_config
    from sltdata.train.runs import train

    shards = islr_shards(islr_store, tmp_path / "shards", folds=2)
    train("islr", shards, tmp_path / "run", tiny_islr_config(train={"epochs": 1}), val_fold=0)
    key = predict(tmp_path / "run", [islr_store], top_k=1).records[0]["key"]
    windows = predict(tmp_path / "run", [islr_store], keys=[key], top_k=1, window=4).records
    assert [w["frames"] for w in windows][:2] == [[0, 4], [4, 8]] and len(windows) > 2
    assert main(["predict", str(tmp_path / "run"), str(islr_store), "--keys", key, "--window", "4", "--json",
                 "--compose", str(t5_dir)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["predictions"][0]["label"] for x in lines[:-1]] == [w["predictions"][0]["label"] for w in windows]
    glosses = collapse_repeats(w["predictions"][0]["label"] for w in windows)
    assert lines[-1]["glosses"] == glosses and lines[-1]["key"] == key
    assert lines[-1]["sentence"] == load_composer(t5_dir).compose(glosses)
