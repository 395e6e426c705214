"""The backend contract: one suite of behaviour tests every backend (local, fake, cml) passes."""
