"""symgrad in one page: derivatives as math, as a program, and checked three ways."""

import sympy as sp

import symgrad as sg

x, y = sp.symbols("x y")
f = x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y
print("f =", f)

print("\n# gradient as SymPy expressions")
for var, d in zip((x, y), sg.grad(f, [x, y])):
    print(f"df/d{var} =", d)

print("\n# pretty-printed")
sp.pprint(sg.derivative(f, y))

print("\n# the shared-subexpression gradient program")
print(sg.gradient_program(f, [x, y]))

print("\n# Hessian")
sp.pprint(sg.hessian(f, [x, y]))

print("\n# micrograd's example on the tape engine")
v = sg.Value(-4.0)
z = 2 * v + 2 + v
q = z.relu() + z * v
out = (z * z).relu() + q + q * v
out.backward()
print(f"out.data = {out.data}, v.grad = {v.grad}")

print("\n# symbolic vs tape vs finite differences")
print(sg.check_grad(f, [x, y], {x: 1.5, y: 0.7}))
