"""Device profiles and measured training logs (time, energy) of real devices."""
