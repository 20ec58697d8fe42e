"""The `flopcast` command: `main` builds the parser from one module per subcommand (`results`,
`upload`, `fit`, `profile`, `model`, `step`, `plan`, `report`); `inputs` and `output` are what they
share."""
