"""Pure physics functions over an array namespace ``xp``: no state, no I/O.

Conventions used throughout (lengths in angstrom, angles in mrad unless named otherwise):

- arrays are indexed ``[..., y, x]``; positions are ``(y, x)`` pairs in A;
- the probe lives in real space with its centre at pixel ``(N//2, N//2)`` of its grid;
- far-field waves come from ``fft2(..., norm="ortho")`` so that total intensity is preserved, with
  the zero frequency at pixel 0 (the engines ``ifftshift`` measured, centred patterns once);
- the wave after a plane distance ``dz`` further downstream is ``ifft2(fft2(psi) * exp(-i pi
  lambda dz k^2))``, and an aberrated probe is ``ifft2(A(k) exp(-i chi(k)))`` with the Krivanek
  aberration function ``chi``: a probe with C10 = -dz is brought to focus by propagating ``dz``.
"""
