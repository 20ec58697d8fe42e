"""flopcast's planning half: from result records to the cost of a training run.

The flow, one subpackage a stage, each importing only the stages above it in this list:

    schema.py      the record contract bench writes and everything here reads
    records/       results files and the shared database -> one table of records
    laws/          loss against parameters and tokens: fitted laws, compute-optimal N and D
    hardware/      one GPU: datasheet presets, or curves fitted from records (a profile)
    model/         one training step: the model's shape, memory per GPU, step time by term
    plan/          a budget on a cluster: days, GPU-hours, failures, megawatts, dollars
    report/        the HTML page and its figures;  validate/: published runs to check against
    cli/           the `flopcast` command, one module per subcommand

Shared by all: provenance.py (a figure with its label and source), references.py (cited
figures), units.py (parsing and printing numbers), output.py (tables and JSON), labels.py,
errors.py. Nothing in this
package imports torch or triton, so fitting and planning run on any laptop.
"""
