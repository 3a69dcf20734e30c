"""Human Feedback Inversion: feedback on generated images -> a soft text token."""
