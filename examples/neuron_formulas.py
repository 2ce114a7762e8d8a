"""dL/dw for one tanh neuron, three ways: pretty text, LaTeX, and the gradient program.

Then the same neuron as a layer (matrix expressions): the backprop equations.
"""

import sympy as sp

import symgrad as sg

# one neuron, micrograd style: o = tanh(w0*x0 + w1*x1 + b), squared error against t
w0, w1, b, x0, x1, t = sp.symbols("w0 w1 b x0 x1 t")
o = sp.tanh(w0 * x0 + w1 * x1 + b)
L = (o - t) ** 2

grads = sg.grad(L, [w0, w1, b])
print("L =", L)
for w, g in zip((w0, w1, b), grads):
    print(f"\ndL/d{w} =")
    sp.pprint(g)

print("\nLaTeX:")
for w, g in zip((w0, w1, b), grads):
    print(rf"\frac{{\partial L}}{{\partial {w}}} = {sp.latex(g)}")

print("\nThe gradient program (each intermediate computed once):")
print(sg.gradient_program(L, [w0, w1, b]))

print("\nChecked against the tape engine and finite differences:")
print(sg.check_grad(L, [w0, w1, b], {w0: 0.3, w1: -0.5, b: 0.1, x0: 1.0, x1: 2.0, t: 0.5}))

# the same computation for a layer of 4 tanh neurons: matrices, not scalars
W = sp.MatrixSymbol("W", 4, 2)
bv = sp.MatrixSymbol("b", 4, 1)
x = sp.MatrixSymbol("x", 2, 1)
T = sp.MatrixSymbol("T", 4, 1)
h = (W * x + bv).applyfunc(sp.tanh)
loss = sg.sum_squares(h - T)
print("\nA layer: loss = sum((tanh(W*x + b) - T)**2); the backprop equations:")
print(sg.gradient_program(loss, [W, bv]))
