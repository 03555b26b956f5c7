"""The picture helpers: the class legend of the bird's-eye-view picture."""
import numpy as np

from projects.img2lidar.visualization import bev_legend


def test_legend_shows_each_class_colour():
    names = ['car', 'road', 'vegetation']
    colors = np.array([[0, 150, 245], [255, 0, 255], [0, 175, 0]], dtype=np.uint8)  # RGB
    panel = bev_legend(names, colors, height=400)
    assert panel.shape == (400, 190, 3) and panel.dtype == np.uint8
    for i, rgb in enumerate(colors):
        y = 24 + i * 16 + 5  # inside the i-th swatch
        assert panel[y, 10].tolist() == rgb[::-1].tolist()  # BGR, as OpenCV writes it
        assert panel[y, 30:180].any()  # its name is written next to it
    assert not panel[24 + 3 * 16 + 5, 10].any()  # no fourth swatch


def test_legend_summarises_what_does_not_fit():
    names = [f'class{i}' for i in range(30)]
    colors = np.full((30, 3), 200, np.uint8)
    panel = bev_legend(names, colors, height=120)
    rows = (120 - 24) // 16
    drawn = sum(bool(panel[24 + i * 16 + 5, 10].any()) for i in range(rows))
    assert drawn == rows - 1  # the last row says how many more classes there are
    assert panel[24 + (rows - 1) * 16:, :].any()
