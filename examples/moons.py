"""micrograd's moons demo end to end, with symgrad compiling the training step.

Trains MLP(2, [16, 16, 1]) (ReLU, hinge loss, L2 1e-4, SGD with micrograd's
learning-rate schedule) for 100 steps, prints the accuracy, and saves the
decision boundary and the loss curve as moons.png when matplotlib is installed.
"""

import sys

from symgrad.demo import moons_demo

if __name__ == "__main__":
    plot = sys.argv[1] if len(sys.argv) > 1 else "moons.png"
    moons_demo(steps=100, plot=plot)
