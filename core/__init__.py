"""The floor every package stands on: errors, the stage contract, the artifact store, shared names and
the document/sentence contracts. It imports no other package of this project."""
