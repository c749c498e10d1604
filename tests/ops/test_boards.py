"""Board profiles: every field present, typed, positive where it must be, and sourced."""

import json

import pytest

from speedllm.ops.boards import BOARD_FIELDS, board_names, get_board, load_boards

BOARDS = ("pynq-z2", "kv260", "zcu104", "u280", "ulx3s-85f")


def _spellings(value):
    """The ways a number may be written in a source text."""
    out = {f"{value:g}", f"{value / 1e9:g} GB/s", f"{value / 1e6:g} MB/s"}
    if float(value).is_integer():
        out |= {f"{int(value)}", f"{int(value):,}"}
    return out


def test_the_five_boards_are_there():
    assert set(BOARDS) <= set(board_names())


@pytest.mark.parametrize("name", BOARDS)
def test_profile_has_every_field_with_a_source(name):
    b = get_board(name)
    for field, ftype in BOARD_FIELDS.items():
        value = getattr(b, field)
        assert isinstance(value, ftype), (field, value)
        src = b.source(field)
        assert isinstance(src, str) and len(src.strip()) >= 10, (field, src)
    assert b.assumptions <= set(BOARD_FIELDS)
    for field in ("fabric_mhz", "axi_data_bits", "weight_ports", "max_burst_beats",
                  "dram_peak_bytes_per_s", "dram_read_latency_ns", "lut", "ff", "dsp",
                  "bram_blocks", "bram_block_kbits"):
        assert getattr(b, field) > 0, field
    assert 0 < b.dram_efficiency <= 1
    assert b.bram_block_kbits in (18, 36)


@pytest.mark.parametrize("name", BOARDS)
def test_published_numbers_are_written_in_their_source(name):
    """A figure that is not an assumption appears, as written, in the text citing it."""
    b = get_board(name)
    for field, ftype in BOARD_FIELDS.items():
        if ftype is str or field in b.assumptions:
            continue
        value, src = getattr(b, field), b.source(field)
        assert any(s in src for s in _spellings(value)), (field, value, src)


@pytest.mark.parametrize("name", BOARDS)
def test_assumed_figures_say_so(name):
    b = get_board(name)
    assert {"fabric_mhz", "dram_efficiency", "dram_read_latency_ns"} <= b.assumptions
    for field in b.assumptions:
        assert "assumption" in b.source(field), field


def test_derived_bandwidths():
    b = get_board("pynq-z2")
    assert b.dram_attainable_bytes_per_s == b.dram_peak_bytes_per_s * b.dram_efficiency
    assert b.axi_bytes_per_s() == b.axi_data_bits / 8 * b.weight_ports * b.fabric_mhz * 1e6
    assert b.axi_bytes_per_s(50, 1) == b.axi_data_bits / 8 * 50e6
    assert b.bram_bits == b.bram_blocks * b.bram_block_kbits * 1024


def test_get_board_unknown_names_the_choices():
    with pytest.raises(ValueError, match="pynq-z2"):
        get_board("pynq-z9")
    b = get_board("kv260")
    assert get_board(b) is b


def _packaged_json():
    from importlib import resources
    return json.loads(resources.files("speedllm.bitstreams").joinpath("boards.json").read_text())


def test_loader_rejects_missing_field_and_missing_source(tmp_path):
    data = _packaged_json()
    assert set(load_boards()) == set(data["boards"])
    broken = json.loads(json.dumps(data))
    del broken["boards"]["pynq-z2"]["dsp"]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="lacks.*dsp"):
        load_boards(path)
    broken = json.loads(json.dumps(data))
    broken["boards"]["kv260"]["lut"]["source"] = " "
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="no source"):
        load_boards(path)
    broken = json.loads(json.dumps(data))
    broken["boards"]["u280"]["dram_efficiency"]["value"] = 1.5
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="dram_efficiency"):
        load_boards(path)
