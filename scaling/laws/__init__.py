"""Loss as a function of parameters and tokens: the law forms (`forms`), fitting them to
training runs (`fit`, `isoflop`), the published points they are fitted to (`points`, `data/`),
and the compute-optimal split of a budget (`budget`)."""
