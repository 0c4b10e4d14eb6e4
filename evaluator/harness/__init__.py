"""The inference harness: the code that runs INSIDE the sandbox.

It opens the participant's model through its format's handler (evaluator.modelformats),
preprocesses the memory-mapped cubes with datasets.spectral.preprocess (the function the
starter kit trains with), runs the model with the allotted threads, writes one uint8 label
map per case to the output directory and reports progress as JSON lines on
$XENOBENCH_EVENT_FD. It imports only numpy, the evaluator/datasets sources and the model
runtime, so nothing here can reach platform secrets.
"""
