"""The `flopcast` command: `main` builds the parser from one module per subcommand (`results`,
`upload`, `fit`, `profile`, `model`, `step`, `memory`, `plan`, `validate`, `report`); `inputs` is
what they share (printing: `scaling.output`)."""
