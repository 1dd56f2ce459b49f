"""SPyNet pretraining on synthetic flow pairs and its evaluation on MPI-Sintel samples (`videoanyup train-flow`)."""
