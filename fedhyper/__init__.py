"""fedhyper: personalised federated learning with server-side hypernetworks on Flower."""
