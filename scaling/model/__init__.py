"""What a training step costs: the model shape (`config`), saved activations (`activations`),
bytes per GPU (`memory`) and the time of one step on a layout (`step`)."""
