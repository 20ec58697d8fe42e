"""The published reference figures: each once, cited, and read by the modules that use them."""

import re

from scaling import references
from scaling.laws.budget import BUDGETS
from scaling.plan import energy, reliability
from scaling.references import REFERENCES


def test_every_reference_is_published_with_a_unit_and_a_citation():
    assert len(REFERENCES) >= 10
    for name, fig in REFERENCES.items():
        assert fig.label == "published", name
        assert fig.unit, name
        # a citation names a document: a paper, a table or section, a datasheet, a report
        assert re.search(r"arXiv|Table|Sec\.|datasheet|model card|earnings|SemiAnalysis",
                         fig.source), (name, fig.source)


def test_the_figures_are_the_published_ones():
    # Llama 3 paper: 3.8e25 FLOPs, 405B parameters, 15.6T tokens, 16,384 H100, 400 TFLOP/s,
    # 419 unexpected interruptions in 54 days; Llama 3.1 model card: 30.84M GPU-hours.
    assert references.LLAMA3_COMPUTE_FLOPS.value == 3.8e25
    assert references.LLAMA4_COMPUTE_FLOPS.value == 10 * 3.8e25
    assert (references.LLAMA3_PARAMS.value, references.LLAMA3_TOKENS.value) == (405e9, 15.6e12)
    assert references.LLAMA3_GPUS.value == 16_384
    assert references.LLAMA3_TFLOPS_PER_GPU.value == 400.0
    assert references.LLAMA3_GPU_HOURS.value == 30.84e6
    assert (references.LLAMA3_UNEXPECTED_INTERRUPTIONS.value,
            references.LLAMA3_SNAPSHOT_DAYS.value) == (419, 54)
    assert references.H100_TDP_W.value == 700.0


def test_defaults_read_the_references():
    assert BUDGETS["llama3"].compute_flops == references.LLAMA3_COMPUTE_FLOPS.value
    assert BUDGETS["llama3"].source == references.LLAMA3_COMPUTE_FLOPS.source
    assert BUDGETS["10x-llama3"].compute_flops == references.LLAMA4_COMPUTE_FLOPS.value
    assert energy.H100_TDP_W == references.H100_TDP_W.value
    assert reliability.LLAMA3_FAILURES_PER_GPU_HOUR == 419 / (54 * 24 * 16_384)
