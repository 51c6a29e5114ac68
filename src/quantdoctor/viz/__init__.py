"""Model Explorer: the overlay quantdoctor writes (`overlay`) and the viewer it starts (`explorer`)."""
