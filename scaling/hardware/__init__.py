"""What one GPU does: datasheet presets (`datasheets`), measured curves of throughput and power
(`curves`), fitted from result records into a profile (`calibration`, `profile`)."""
