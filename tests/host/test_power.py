"""speedllm.host.power: board power from PYNQ rails, recorded by the real pynq.DataRecorder
over stand-in sensors (this machine has no PMBus rails); the --power option's errors."""

import time

import pytest

from speedllm import cli
from speedllm.errors import AcceleratorError
from speedllm.host.power import PowerMeter

pynq = pytest.importorskip("pynq")


class ConstantSensor:
    """A stand-in for pynq.pmbus.Sensor: what MultiSensor reads (name, parents, get_value)."""

    def __init__(self, name, watts):
        self.name, self.watts, self.parents = name, watts, ()

    def get_value(self, parents=()):
        return self.watts


class StandInRail:
    def __init__(self, name, watts):
        self.name = name
        self.voltage = self.current = None
        self.power = None if watts is None else ConstantSensor(f"{name}_power", watts)


def rails(**watts):
    return {name: StandInRail(name, w) for name, w in watts.items()}


def test_power_and_energy_follow_from_the_samples():
    meter = PowerMeter(rails(VCCINT=1.5, VCCAUX=0.25, MGT=None), pynq.DataRecorder,
                       interval_s=0.01)
    assert sorted(meter.sensors) == ["VCCAUX", "VCCINT"]        # MGT has no power sensor
    with meter:
        time.sleep(0.2)
    f = meter.figures(tokens=10)
    assert f["samples"] >= 3
    assert f["power_w"] == pytest.approx(1.75)
    assert f["rails_w"] == pytest.approx({"VCCAUX": 0.25, "VCCINT": 1.5})
    assert f["seconds"] == pytest.approx(0.2, abs=0.15)
    assert f["energy_j"] == pytest.approx(1.75 * f["seconds"])
    assert f["j_per_token"] == pytest.approx(f["energy_j"] / 10)
    assert f["tokens_per_j"] == pytest.approx(10 / f["energy_j"])
    assert f["kind"].startswith("measured")


def test_no_rails_is_one_clear_error():
    with pytest.raises(AcceleratorError, match="no power rails to measure") as e:
        PowerMeter(rails(VCCINT=None), pynq.DataRecorder)
    assert "\n" not in str(e.value)


def test_figures_before_recording_are_refused():
    meter = PowerMeter(rails(VCCINT=1.0), pynq.DataRecorder)
    with pytest.raises(RuntimeError, match="nothing recorded"):
        meter.figures(1)


def test_from_pynq_on_a_machine_without_rails(monkeypatch):
    monkeypatch.setattr(pynq, "get_rails", lambda config_file=None: {})
    with pytest.raises(AcceleratorError, match="PMBus"):
        PowerMeter.from_pynq()


def test_power_applies_to_the_board_backend_only(capsys, model_path, tok512_path):
    rc = cli.main(["generate", str(model_path), "-z", str(tok512_path), "-n", "4",
                   "--backend", "golden", "--power"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith("speedllm: error: --power measures a board's power rails")
