"""`slm model list | info`: real subprocesses."""

import json

from tests.user_errors import assert_user_error


def test_model_list_shows_every_preset_with_its_counts(slm):
    proc = slm("model", "list", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "layers", "dim", "heads", "kv", "ffn", "vocab", "tied",
                                "params", "non-emb"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["tinyllama-1.1b"] == ["tinyllama-1.1b", "22", "2048", "32", "4", "5632", "32000",
                                      "no", "1.10B", "969M"]
    assert rows["litellama-460m"][-2:] == ["462M", "359M"]
    assert {"llama-1m", "llama-300m", "debug-100k"} <= set(rows)


def test_model_info_json_reports_exact_counts_flops_and_memory(slm):
    info = json.loads(slm("model", "info", "tinyllama-1.1b", "--json", check=True).stdout)
    assert info["params_total"] == 1_100_048_384
    assert info["params_non_embedding"] == 968_976_384
    assert info["seq_len"] == 2048
    assert info["flops_per_token"] == 6 * (968_976_384 + 32000 * 2048) + 12 * 22 * 2048 * 2048
    assert info["weight_memory_bf16_bytes"] == 2 * 1_100_048_384
    assert info["config"]["n_kv_heads"] == 4 and info["head_dim"] == 64


def test_model_info_seq_len_changes_the_attention_flops(slm):
    short = json.loads(slm("model", "info", "litellama-460m", "--json", "--seq-len", "1024", check=True).stdout)
    long = json.loads(slm("model", "info", "litellama-460m", "--json", check=True).stdout)
    assert long["flops_per_token"] - short["flops_per_token"] == 12 * 24 * 1024 * 1024


def test_model_info_text_names_the_numbers(slm):
    out = slm("model", "info", "litellama-460m", check=True).stdout
    assert "461,685,760 total" in out and "seq_len 2048" in out and "GiB" in out


def test_unknown_preset_is_a_user_error_listing_known_ones(slm):
    assert_user_error(slm("model", "info", "llama-7b"), "unknown model preset 'llama-7b'",
                      "known: tinyllama-1.1b, litellama-460m")


def test_non_positive_seq_len_is_a_user_error(slm):
    assert_user_error(slm("model", "info", "debug-1m", "--seq-len", "0"), "--seq-len")
