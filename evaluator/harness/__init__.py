"""The inference harness: the code that runs INSIDE the sandbox.

It loads the participant's model (TorchScript, torch.export or ONNX), preprocesses the
memory-mapped cubes, runs the model with the allotted threads, writes one uint8 label map per
case to the output directory and reports progress as JSON lines on $XENOBENCH_EVENT_FD.
It imports only numpy and the model runtime, so nothing here can reach platform secrets.
"""
