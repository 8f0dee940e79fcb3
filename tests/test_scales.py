import pytest
import torch

from hessnoise import scales
from hessnoise._validate import number, numbers


def test_scales_and_devices_are_the_documented_ones():
    assert scales.SCALES == ("smoke", "small", "paper")
    assert scales.DEVICES == ("auto", "cpu", "cuda")
    assert scales.DEFAULT_SCALE == "small"


@pytest.mark.parametrize("bad", ["tiny", "Small", "", None])
def test_unknown_scale_names_parameter_and_allowed_values(bad):
    with pytest.raises(ValueError) as err:
        scales.check_scale(bad)
    msg = str(err.value)
    assert "scale=" in msg and "'smoke'" in msg and "'small'" in msg and "'paper'" in msg


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match=r"device='tpu'.*'auto', 'cpu', 'cuda'"):
        scales.resolve_device("tpu")


def test_auto_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert scales.resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="device='cuda'.*is_available"):
        scales.resolve_device("cuda")


def test_by_scale_picks_and_validates():
    assert scales.by_scale("smoke", smoke=1, small=2, paper=3) == 1
    assert scales.by_scale("paper", smoke=1, small=2, paper=3) == 3
    with pytest.raises(ValueError, match="scale='huge'"):
        scales.by_scale("huge", smoke=1, small=2, paper=3)


def test_number_checks_range_type_and_finiteness():
    assert number("eta", 0.1, lo=0, lo_open=True) == 0.1
    with pytest.raises(ValueError, match=r"eta=0 is out of range; allowed: a number in \(0, inf\]"):
        number("eta", 0, lo=0, lo_open=True)
    with pytest.raises(ValueError, match="steps=2.5 must be an integer"):
        number("steps", 2.5, lo=1, integer=True)
    with pytest.raises(ValueError, match="must be a number"):
        number("eta", float("nan"))
    with pytest.raises(ValueError, match="must be a number"):
        number("flag", True)
    with pytest.raises(ValueError, match=r"etas\[1\]=-1"):
        numbers("etas", [0.1, -1], lo=0, lo_open=True)
