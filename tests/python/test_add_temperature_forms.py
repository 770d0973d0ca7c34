"""add_temperature --form {scale,power,fused}: the Power layer, switching forms, and what a model needs."""

from __future__ import annotations

import numpy as np
import pytest

from caffe_temperature import add_temperature_cli as tool
from caffe_temperature import calibrate
from caffe_temperature import rewrite
from test_add_temperature import IN_PLACE, SIMPLE, caffemodel, layer, parse, run_main, run_text, stored


@pytest.fixture
def simple(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(SIMPLE)
    return path


def power_feeding(text: str, softmax_name: str = "prob"):
    net = parse(text)
    index = [i for i, l in enumerate(net.layer) if l.name == softmax_name][0]
    power = net.layer[index - 1]
    assert power.type == "Power" and rewrite.is_temperature_power(power)
    assert rewrite.own_temperature_index(net, index) == index - 1
    assert not power.param and not power.blobs
    return power


def test_power_form_inserts_power_before_softmax(capsys, simple):
    code, out, err = run_main(capsys, simple, "--T", "40", "--form", "power")
    assert code == 0, err
    net = parse(out)
    assert [l.name for l in net.layer] == ["data", "ip", "prob_temperature", "prob"]
    power = power_feeding(out)
    assert (power.power_param.power, power.power_param.scale, power.power_param.shift) == (1, pytest.approx(0.025), 0)
    assert power.bottom == ["ip"] and power.top == ["prob_temperature"]
    assert layer(net, "prob").bottom == ["prob_temperature"] and layer(net, "prob").type == "Softmax"
    # power and shift are written out: that is how a re-run recognises the layer
    assert "power: 1" in out and "shift: 0" in out
    assert "inserted Power 'prob_temperature'" in err and "Power layers hold no blobs" in err


def test_power_form_in_place(capsys, tmp_path):
    net = parse(run_text(capsys, tmp_path, IN_PLACE, "--T", "5", "--form", "power"))
    assert [l.name for l in net.layer] == ["data", "ip", "prob_temperature", "prob", "after"]
    power = layer(net, "prob_temperature")
    assert power.type == "Power" and power.bottom == ["ip"] and power.top == ["ip"]


def test_fused_is_an_alias_of_form_fused(capsys, tmp_path):
    assert run_text(capsys, tmp_path, SIMPLE, "--T", "3", "--fused") == run_text(
        capsys, tmp_path, SIMPLE, "--T", "3", "--form", "fused")


@pytest.mark.parametrize("argv", [["--form", "power", "--fused"], ["--form", "cube"]])
def test_bad_form_arguments(capsys, simple, argv):
    with pytest.raises(SystemExit) as stop:
        tool.main([str(simple), "--T", "2", *argv])
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"{tool.PROG}: error: ")


def test_forms_convert_into_each_other_keeping_the_name(capsys, tmp_path):
    """scale -> power -> fused -> scale: each step equals the same form made from the plain net."""
    direct = {form: run_text(capsys, tmp_path, SIMPLE, "--T", "8", "--form", form) for form in rewrite.FORMS}
    text = direct["scale"]
    for form in ("power", "fused", "scale", "power"):
        text = run_text(capsys, tmp_path, text, "--T", "8", "--form", form)
        assert text == direct[form], form
    assert parse(run_text(capsys, tmp_path, text, "--T", "1")) == parse(SIMPLE)


def test_switching_form_is_a_note(capsys, tmp_path):
    path = tmp_path / "scaled.prototxt"
    path.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40"))
    code, _, err = run_main(capsys, path, "--T", "20", "--form", "power")
    assert code == 0
    assert "Scale 'prob_temperature' (1/T = 0.025) is now a Power (1/T = 0.05)" in err


def test_a_users_power_layer_is_not_mistaken_for_the_temperature(capsys, tmp_path):
    """A Power that leaves power and shift at their defaults is the user's: a new layer goes after it."""
    text = SIMPLE.replace(
        'layer { name: "prob"',
        'layer { name: "mine" type: "Power" bottom: "ip" top: "mine" power_param { scale: 2 } }\n'
        'layer { name: "prob"').replace('bottom: "ip" top: "prob"', 'bottom: "mine" top: "prob"')
    net = parse(run_text(capsys, tmp_path, text, "--T", "4", "--form", "power"))
    assert [l.name for l in net.layer] == ["data", "ip", "mine", "prob_temperature", "prob"]
    assert layer(net, "mine") == layer(parse(text), "mine")


BETA_BOTTOM = """
layer { name: "data" type: "Input" top: "data" top: "beta" input_param { shape { dim: 2 dim: 6 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
layer { name: "learnt" type: "TemperatureSoftmax" bottom: "ip" bottom: "beta" top: "learnt" }
"""


def test_power_form_refuses_a_beta_bottom(capsys, tmp_path):
    path, out = tmp_path / "beta.prototxt", tmp_path / "out.prototxt"
    path.write_text(BETA_BOTTOM)
    code, stdout, err = run_main(capsys, path, "--T", "4", "--form", "power", "-o", out)
    assert code == 2 and stdout == "" and not out.exists()
    assert len(err.splitlines()) == 1
    assert "TemperatureSoftmax 'learnt'" in err and "per-sample or learnt" in err and "'beta'" in err
    # the other Softmax, named, is fine; so is the scale form, which leaves the layer alone
    assert run_main(capsys, path, "--T", "4", "--form", "power", "--layer", "prob")[0] == 0
    assert run_main(capsys, path, "--T", "4")[0] == 0


def test_power_needs_no_model_change(capsys, tmp_path, simple):
    weights = caffemodel(tmp_path / "plain.caffemodel", {})
    new = tmp_path / "copy.caffemodel"
    code, _, err = run_main(capsys, simple, "--T", "4", "--form", "power", "--weights", weights, "--weights-out", new)
    assert code == 0, err
    assert new.read_bytes() == weights.read_bytes()
    assert "stores no 1/T" not in err


def test_scale_to_power_drops_the_stored_blob(capsys, tmp_path):
    """Caffe refuses a model that stores a blob for a layer (now a Power) that has none."""
    scaled = tmp_path / "scaled.prototxt"
    scaled.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40"))
    weights = caffemodel(tmp_path / "T40.caffemodel", {"prob_temperature": [0.025]})
    out, new = tmp_path / "power.prototxt", tmp_path / "power.caffemodel"
    code, _, err = run_main(capsys, scaled, "--T", "40", "--form", "power", "-o", out, "--weights", weights)
    assert code == 2 and not out.exists()
    assert "now a Power layer without blobs" in err and "--weights-out" in err
    code, _, err = run_main(capsys, scaled, "--T", "40", "--form", "power", "-o", out, "--weights", weights,
                            "--weights-out", new)
    assert code == 0, err
    assert stored(new, "prob_temperature") == [] and stored(new, "ip") == stored(weights, "ip")
    assert "dropped the stored 1/T = 0.025" in err


def test_power_to_scale_stores_the_blob(capsys, tmp_path):
    powered = tmp_path / "power.prototxt"
    powered.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40", "--form", "power"))
    weights = caffemodel(tmp_path / "plain.caffemodel", {})
    new = tmp_path / "T4.caffemodel"
    code, _, err = run_main(capsys, powered, "--T", "4", "--weights", weights, "--weights-out", new)
    assert code == 0, err
    assert stored(new, "prob_temperature") == [0.25]


def test_calibrate_applies_the_form(capsys, tmp_path, simple):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4, size=(200, 5))
    labels = rng.integers(0, 5, size=200)
    np.save(tmp_path / "L.npy", logits)
    np.save(tmp_path / "Y.npy", labels)
    out = tmp_path / "calibrated.prototxt"
    argv = ["--logits", str(tmp_path / "L.npy"), "--labels", str(tmp_path / "Y.npy"), "--apply", str(simple),
            "-o", str(out)]
    assert calibrate.main([*argv, "--form", "power"]) == 0
    fitted = parse(out.read_text())
    power = layer(fitted, "prob_temperature")
    assert power.type == "Power" and power.power_param.scale == pytest.approx(1 / calibrate.fit_temperature(
        logits, labels), rel=1e-6)
    assert calibrate.main([*argv, "--fused"]) == 0 and layer(parse(out.read_text()), "prob").type == "TemperatureSoftmax"
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        calibrate.main(argv[:4] + ["--form", "power"])
    assert stop.value.code == 2 and "--form (or --fused) goes with --apply" in capsys.readouterr().err
