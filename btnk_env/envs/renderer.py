"""Headless OpenGL renderer of equirectangular panoramas (moderngl, EGL).

A panorama is made in two passes: the scene is rasterised into the six 95-degree faces of a cube
around the eye (packed in a 3x2 atlas), then a full-screen pass resamples the atlas to the
equirectangular image. On a machine without a GPU, EGL runs on Mesa's llvmpipe (software).

Equirectangular convention: column ``0 .. W-1`` spans heading ``-180 .. +180`` degrees relative to
the agent's facing direction (the centre column looks straight ahead, columns to the right look to
the agent's right); row ``0 .. H-1`` spans elevation ``+90`` (up) ``.. -90`` (down).
"""

from __future__ import annotations

import math
import os

import numpy as np

from btnk_env.envs.mesh import VERTEX_ATTRIBUTES, VERTEX_FORMAT

__all__ = ["PanoramaRenderer", "MAX_LIGHTS"]

MAX_LIGHTS = 16
_FACE_FOV_DEG = 95.0  # a little more than 90 so that bilinear lookups never leave a face
_NEAR, _FAR = 0.05, 100.0

# faces in the camera frame (x right, y up, -z forward): (forward, right, up)
_FACES = np.array([
    [(0, 0, -1), (1, 0, 0), (0, 1, 0)],   # front
    [(1, 0, 0), (0, 0, 1), (0, 1, 0)],    # right
    [(0, 0, 1), (-1, 0, 0), (0, 1, 0)],   # back
    [(-1, 0, 0), (0, 0, -1), (0, 1, 0)],  # left
    [(0, 1, 0), (1, 0, 0), (0, 0, 1)],    # up
    [(0, -1, 0), (1, 0, 0), (0, 0, -1)],  # down
], dtype=np.float64)

_SCENE_VS = """
#version 330
uniform mat4 u_mvp;
uniform vec3 u_offset;
in vec3 in_pos; in vec3 in_normal; in vec2 in_uv; in float in_layer;
in vec3 in_tint; in float in_emit; in float in_room;
out vec3 v_world; out vec3 v_normal; out vec2 v_uv; flat out float v_layer;
out vec3 v_tint; flat out float v_emit; flat out int v_room;
void main() {
    v_world = in_pos + u_offset;
    v_normal = in_normal; v_uv = in_uv; v_layer = in_layer; v_tint = in_tint;
    v_emit = in_emit; v_room = int(in_room + 0.5);
    gl_Position = u_mvp * vec4(v_world, 1.0);
}
"""

_SCENE_FS = """
#version 330
uniform sampler2DArray u_tex;
uniform vec3 u_eye;
uniform float u_ceiling;
uniform vec4 u_light_pos[%(n)d];
uniform vec3 u_light_color[%(n)d];
in vec3 v_world; in vec3 v_normal; in vec2 v_uv; flat in float v_layer;
in vec3 v_tint; flat in float v_emit; flat in int v_room;
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_dist;
void main() {
    vec3 albedo = texture(u_tex, vec3(v_uv, v_layer)).rgb * v_tint;
    vec3 n = normalize(v_normal);
    vec3 to_light = u_light_pos[v_room].xyz - v_world;
    float d2 = dot(to_light, to_light);
    float lambert = max(dot(n, to_light * inversesqrt(d2)), 0.0);
    // ambient: more bounce light on surfaces facing down (ceilings) than up
    vec3 light = vec3(0.40 - 0.10 * n.y) + u_light_color[v_room] * lambert * (2.2 / (2.0 + 0.3 * d2));
    // cheap ambient occlusion where walls meet the floor and the ceiling
    float ao = mix(0.72, 1.0, smoothstep(0.0, 0.45, v_world.y))
             * mix(0.82, 1.0, smoothstep(0.0, 0.35, u_ceiling - v_world.y));
    vec3 lit = albedo * light * ao;
    lit = lit * 1.15 / (1.0 + 0.15 * lit);  // soft highlights instead of clipping
    f_color = vec4(mix(lit, albedo, v_emit), 1.0);
    f_dist = length(v_world - u_eye);
}
""" % {"n": MAX_LIGHTS}

_PANO_VS = """
#version 330
in vec2 in_xy;
void main() { gl_Position = vec4(in_xy, 0.0, 1.0); }
"""

_PANO_FS = """
#version 330
uniform sampler2D u_atlas_color;
uniform sampler2D u_atlas_dist;
uniform vec2 u_size;
uniform float u_scale;
uniform float u_margin;
uniform vec3 u_fwd[6]; uniform vec3 u_right[6]; uniform vec3 u_up[6];
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_dist;
void main() {
    const float PI = 3.14159265358979;
    float lon = gl_FragCoord.x / u_size.x * 2.0 * PI - PI;
    float lat = 0.5 * PI - gl_FragCoord.y / u_size.y * PI;  // read-back row 0 is the top
    vec3 d = vec3(sin(lon) * cos(lat), sin(lat), -cos(lon) * cos(lat));
    int face = 0; float best = -2.0;
    for (int i = 0; i < 6; ++i) { float c = dot(d, u_fwd[i]); if (c > best) { best = c; face = i; } }
    vec2 ndc = vec2(dot(d, u_right[face]), dot(d, u_up[face])) / best * u_scale;
    vec2 uv = clamp(ndc * 0.5 + 0.5, vec2(u_margin), vec2(1.0 - u_margin));
    vec2 tile = vec2(float(face % 3), float(face / 3));
    vec2 auv = (tile + uv) / vec2(3.0, 2.0);
    f_color = vec4(texture(u_atlas_color, auv).rgb, 1.0);
    f_dist = texture(u_atlas_dist, auv).r;
}
"""


def _load_llvm_users_first() -> None:
    """Load PyTorch's compiler stack (triton and its LLVM) before Mesa's llvmpipe.

    Mesa's software renderer and triton each bring an LLVM; if llvmpipe is loaded first, the
    first ``torch.optim`` optimizer (which imports ``torch._dynamo``, hence triton) crashes the
    process with a segfault. Importing it first avoids that (about 2 s, once per process).
    """
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:  # torch absent or built without the compiler: nothing to order
        pass


_CONTEXT_PID: int | None = None
"""The process that created this module's first EGL context (copied into forked children)."""


def _create_context():
    global _CONTEXT_PID
    if _CONTEXT_PID is not None and _CONTEXT_PID != os.getpid():
        raise RuntimeError(
            "this process was forked from one that had already rendered the panorama world; EGL does not "
            "survive a fork (rendering here would hang). Create the environments only in the child processes "
            "(render nothing before forking), use the 'spawn' start method, or data.num_workers=0 for training."
        )
    _load_llvm_users_first()
    try:
        import moderngl
    except ImportError as err:  # pragma: no cover - moderngl is a core dependency
        raise ImportError("The built-in panorama world needs moderngl: pip install moderngl") from err
    try:
        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as err:
        raise RuntimeError(
            "Could not create a headless OpenGL (EGL) context for the panorama world. Install EGL and "
            "an OpenGL driver: on Debian/Ubuntu `apt-get install libegl1 libgl1-mesa-dri` (Mesa software "
            f"rendering works without a GPU), or the NVIDIA driver on a GPU machine. Original error: {err}"
        ) from err
    _CONTEXT_PID = os.getpid()
    return ctx


def _perspective(fov_deg: float) -> np.ndarray:
    f = 1.0 / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (_FAR + _NEAR) / (_NEAR - _FAR), 2 * _FAR * _NEAR / (_NEAR - _FAR)],
                     [0, 0, -1, 0]], dtype=np.float64)


class PanoramaRenderer:
    """Rasterises a triangle mesh into ``(H, 2H)`` equirectangular panoramas.

    The GL context is created on the first :meth:`set_scene` and freed by :meth:`release`; each
    renderer owns its own context, so several can live in one process (vector environments).

    Args:
        height: panorama height ``H`` in pixels (the width is ``2H``), 16 to 2048.
        face_size: side of each cube face in pixels; by default matched to the panorama's
            resolution at the horizon.

    Example:
        >>> from btnk_env.envs.layout import generate_layout
        >>> from btnk_env.envs.mesh import layout_mesh
        >>> from btnk_env.envs.textures import make_textures
        >>> lay = generate_layout(0, room_grid=(1, 1))
        >>> r = PanoramaRenderer(height=16)
        >>> r.set_scene(layout_mesh(lay), make_textures(0, size=16), lay)
        >>> rgb, dist = r.render(eye=(1.5, 1.5, 1.5), heading=0.0)
        >>> rgb.shape, rgb.dtype, dist.shape, dist.dtype
        ((16, 32, 3), dtype('uint8'), (16, 32, 1), dtype('float32'))
        >>> r.release()
    """

    def __init__(self, height: int, face_size: int | None = None):
        if not 16 <= int(height) <= 2048:
            raise ValueError(f"height must be in [16, 2048], got {height}")
        self.height, self.width = int(height), 2 * int(height)
        half = math.radians(_FACE_FOV_DEG) / 2
        default = int(math.ceil(self.width * math.tan(half) / math.pi / 8.0)) * 8
        self.face_size = int(face_size or default)
        self.ctx = None
        self._scene = self._goal = self._tex = None

    # -- GL objects -----------------------------------------------------------------------------
    def _init_gl(self) -> None:
        import moderngl

        ctx = self.ctx = _create_context()
        f, w, h = self.face_size, self.width, self.height
        self._prog = ctx.program(vertex_shader=_SCENE_VS, fragment_shader=_SCENE_FS)
        self._pano_prog = ctx.program(vertex_shader=_PANO_VS, fragment_shader=_PANO_FS)
        self._atlas_color = ctx.texture((3 * f, 2 * f), 4)
        self._atlas_dist = ctx.texture((3 * f, 2 * f), 1, dtype="f4")
        for t in (self._atlas_color, self._atlas_dist):
            t.filter = (moderngl.LINEAR, moderngl.LINEAR)
            t.repeat_x = t.repeat_y = False
        zbuf = ctx.depth_renderbuffer((3 * f, 2 * f))
        self._pano_color = ctx.renderbuffer((w, h), 4)
        self._pano_dist = ctx.renderbuffer((w, h), 1, dtype="f4")
        # with and without the float distance targets (skipping them saves memory traffic)
        self._fbos = {
            True: (ctx.framebuffer([self._atlas_color, self._atlas_dist], zbuf),
                   ctx.framebuffer([self._pano_color, self._pano_dist])),
            False: (ctx.framebuffer([self._atlas_color], zbuf), ctx.framebuffer([self._pano_color])),
        }
        tri = np.array([-1, -1, 3, -1, -1, 3], dtype="f4")
        self._quad_vbo = ctx.buffer(tri.tobytes())
        self._quad = ctx.vertex_array(self._pano_prog, [(self._quad_vbo, "2f", "in_xy")])
        p = self._pano_prog
        p["u_size"].value = (float(w), float(h))
        p["u_scale"].value = 1.0 / math.tan(math.radians(_FACE_FOV_DEG) / 2)
        p["u_margin"].value = 0.5 / f
        p["u_fwd"].write(_FACES[:, 0].astype("f4").tobytes())
        p["u_right"].write(_FACES[:, 1].astype("f4").tobytes())
        p["u_up"].write(_FACES[:, 2].astype("f4").tobytes())
        p["u_atlas_color"].value = 0
        p["u_atlas_dist"].value = 1
        self._prog["u_tex"].value = 2
        self._proj = _perspective(_FACE_FOV_DEG)

    def _vao(self, vertices: np.ndarray):
        vbo = self.ctx.buffer(np.ascontiguousarray(vertices, dtype="f4").tobytes())
        return vbo, self.ctx.vertex_array(self._prog, [(vbo, VERTEX_FORMAT, *VERTEX_ATTRIBUTES)])

    def _free_scene(self) -> None:
        for obj in (self._scene or ()) + (self._goal or ()) + ((self._tex,) if self._tex else ()):
            obj.release()
        self._scene = self._goal = self._tex = None

    def set_scene(self, vertices: np.ndarray, textures: np.ndarray, layout, goal_mesh: np.ndarray | None = None) -> None:
        """Upload a scene.

        Args:
            vertices: ``(N, 14)`` float32 triangle list from :func:`~btnk_env.envs.mesh.layout_mesh`.
            textures: ``(L, S, S, 3)`` uint8 material layers.
            layout: the :class:`~btnk_env.envs.layout.Layout` (its lamps and ceiling height).
            goal_mesh: optional ``(M, 14)`` float32 mesh drawn at ``goal`` in :meth:`render`.
        """
        import moderngl

        if self.ctx is None:
            self._init_gl()
        with self.ctx:
            self._free_scene()
            self._scene = self._vao(vertices)
            if goal_mesh is not None:
                self._goal = self._vao(goal_mesh)
            n, s = textures.shape[0], textures.shape[1]
            self._tex = self.ctx.texture_array((s, s, n), 3, np.ascontiguousarray(textures).tobytes())
            self._tex.build_mipmaps()
            self._tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            if len(layout.rooms) > MAX_LIGHTS:
                raise ValueError(f"at most {MAX_LIGHTS} rooms are supported, got {len(layout.rooms)}")
            pos = np.zeros((MAX_LIGHTS, 4), "f4")
            col = np.zeros((MAX_LIGHTS, 3), "f4")
            for i, room in enumerate(layout.rooms):
                cx, cz = room.center
                pos[i, :3] = (cx, layout.ceiling_height - 0.35, cz)
                col[i] = room.light
            self._prog["u_light_pos"].write(pos.tobytes())
            self._prog["u_light_color"].write(col.tobytes())
            self._prog["u_ceiling"].value = float(layout.ceiling_height)

    def render(self, eye, heading: float, goal=None, depth: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Render the panorama seen from ``eye`` looking towards ``heading``.

        Args:
            eye: ``(x, y, z)`` camera position in metres.
            heading: radians; 0 looks along -z, positive turns left (counter-clockwise from above).
            goal: ``(x, y, z)`` base of the goal marker, or None to hide it.
            depth: read back the distances too (otherwise ``dist`` is None; a little faster).

        Returns:
            ``rgb``: ``(H, 2H, 3)`` uint8; ``dist``: ``(H, 2H, 1)`` float32 distance from the eye
            in metres along each ray (or None).
        """
        if self._scene is None:
            raise RuntimeError("call set_scene() before render()")
        import moderngl

        eye = np.asarray(eye, dtype=np.float64)
        c, s = math.cos(heading), math.sin(heading)
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # camera frame -> world
        f = self.face_size
        with self.ctx:
            ctx = self.ctx
            ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
            atlas_fbo, pano_fbo = self._fbos[bool(depth)]
            atlas_fbo.use()
            atlas_fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            self._tex.use(2)
            self._prog["u_eye"].value = tuple(eye)
            for i, (fwd, right, up) in enumerate(_FACES):
                fw, rw, uw = rot @ fwd, rot @ right, rot @ up
                view = np.eye(4)
                view[0, :3], view[1, :3], view[2, :3] = rw, uw, -fw
                view[:3, 3] = -view[:3, :3] @ eye
                mvp = (self._proj @ view).astype("f4")
                self._prog["u_mvp"].write(mvp.T.tobytes())  # GLSL matrices are column-major
                ctx.viewport = ((i % 3) * f, (i // 3) * f, f, f)
                self._prog["u_offset"].value = (0.0, 0.0, 0.0)
                self._scene[1].render(moderngl.TRIANGLES)
                if goal is not None and self._goal is not None:
                    self._prog["u_offset"].value = tuple(float(v) for v in goal)
                    self._goal[1].render(moderngl.TRIANGLES)
            ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
            pano_fbo.use()
            ctx.viewport = (0, 0, self.width, self.height)
            self._atlas_color.use(0)
            self._atlas_dist.use(1)
            self._quad.render(moderngl.TRIANGLES)
            rgb = np.empty((self.height, self.width, 3), np.uint8)
            pano_fbo.read_into(rgb, components=3, attachment=0, alignment=1)
            dist = None
            if depth:
                dist = np.empty((self.height, self.width, 1), np.float32)
                pano_fbo.read_into(dist, components=1, attachment=1, dtype="f4")
        return rgb, dist

    def release(self) -> None:
        """Free the GL objects and the context; the renderer can be set up again with set_scene."""
        if self.ctx is not None:
            with self.ctx:
                self._free_scene()
            self.ctx.release()
            self.ctx = None
