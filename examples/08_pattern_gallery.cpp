// SPDX-License-Identifier: Apache-2.0
// The pattern gallery: every policy's block layout drawn to an SVG file (and to the terminal), and a
// table of density and blocking efficiency (allowed / computed pairs) at n = 4096 with 64 x 64 tiles.
//
//   example_08_pattern_gallery [output directory]     (default: the current directory)
#include <sparse_attention/sparse_attention.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <string>
#include <vector>

namespace sa = sparse_attention;

namespace {

struct Entry {
  std::string file, title;
  std::function<sa::BlockLayout(sa::Index n, sa::BlockSize block)> build;
};

template <class Policy>
Entry entry(std::string file, std::string title, std::function<Policy(sa::Index n)> make) {
  return {std::move(file), std::move(title),
          [make](sa::Index n, sa::BlockSize block) { return sa::BlockLayout::build(make(n), {n, n}, block); }};
}

// One cell per tile: dark for full, light for partial, white for tiles never visited.
void write_svg(const std::string& path, const std::string& title, const sa::BlockLayout& layout) {
  const sa::Index cells = layout.q_blocks(), cell = std::max<sa::Index>(2, 384 / cells), size = cells * cell;
  std::ofstream svg(path);
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << size + 20 << "' height='" << size + 58
      << "' font-family='sans-serif' font-size='13'>\n<rect width='100%' height='100%' fill='white'/>\n"
      << std::fixed << std::setprecision(3) << "<text x='10' y='18'>" << title
      << "</text>\n<text x='10' y='36' fill='#555'>density "
      << layout.density() << ", blocking efficiency " << layout.blocking_efficiency() << "</text>\n"
      << "<g transform='translate(10,46)'>\n<rect width='" << size << "' height='" << size
      << "' fill='white' stroke='#999'/>\n";
  for (sa::Index qb = 0; qb < cells; ++qb) {
    const sa::BlockLayout::Row row = layout.row(0, qb);
    for (const auto& [list, colour] : {std::pair{row.full, "#1f3b73"}, std::pair{row.partial, "#8fb3e8"}})
      for (std::int32_t kb : list)
        svg << "<rect x='" << kb * cell << "' y='" << qb * cell << "' width='" << cell << "' height='" << cell
            << "' fill='" << colour << "'/>\n";
  }
  svg << "</g>\n</svg>\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  std::vector<sa::Index> doc_ids;
  const std::vector<Entry> gallery = {
      entry<sa::Dense>("dense", "Dense", [](sa::Index) { return sa::Dense{}; }),
      entry<sa::Causal>("causal", "Causal", [](sa::Index) { return sa::Causal{}; }),
      entry<sa::LocalWindow>("local", "LocalWindow::causal(n/8)", [](sa::Index n) { return sa::LocalWindow::causal(n / 8); }),
      entry<sa::LocalWindow>("local_symmetric", "LocalWindow::symmetric(n/16)",
                             [](sa::Index n) { return sa::LocalWindow::symmetric(n / 16); }),
      entry<sa::Strided>("strided", "Strided(n/16)", [](sa::Index n) { return sa::Strided(n / 16); }),
      entry<sa::Fixed>("fixed", "Fixed(n/8, n/32)", [](sa::Index n) { return sa::Fixed(n / 8, n / 32); }),
      entry<sa::Longformer>("longformer", "Longformer(n/32, globals {0, n/2})",
                            [](sa::Index n) { return sa::Longformer(n / 32, {0, n / 2}); }),
      entry<sa::BigBird>("bigbird", "BigBird(n/32, g = 1, r = 3), head 0",
                         [](sa::Index n) { return sa::BigBird(n / 32, 1, 3, 2024); }),
      entry<sa::Intersection<sa::Segments, sa::Causal>>("segments_causal", "Segments & Causal (4 documents)",
                                                        [](sa::Index n) {
                                                          std::vector<sa::Index> ids(static_cast<std::size_t>(n));
                                                          for (sa::Index t = 0; t < n; ++t)
                                                            ids[static_cast<std::size_t>(t)] = t < n / 8 ? 0 : t < n / 2 ? 1 : t < 5 * n / 8 ? 2 : 3;
                                                          return sa::Segments(ids) & sa::Causal{};
                                                        }),
      entry<sa::Union<sa::LocalWindow, sa::Strided>>("local_or_strided", "LocalWindow::causal(n/16) | Strided(n/8, bidirectional)",
                                                     [](sa::Index n) {
                                                       return sa::LocalWindow::causal(n / 16) | sa::Strided(n / 8, false);
                                                     }),
  };

  // Drawn at n = 1024 with 32 x 32 tiles: a 32 x 32 grid.
  for (const Entry& e : gallery) {
    const sa::BlockLayout layout = e.build(1024, {32, 32});
    write_svg(dir + "/" + e.file + ".svg", e.title, layout);
    std::printf("%s\n%s\n", e.title.c_str(), layout.to_string(0, 32).c_str());
  }
  std::printf("%-52s %10s %12s\n", "at n = 4096, 64 x 64 tiles (n/8 etc. at this n)", "density", "block eff.");
  for (const Entry& e : gallery) {
    const sa::BlockLayout layout = e.build(4096, {64, 64});
    std::printf("%-52s %10.4f %12.3f\n", e.title.c_str(), layout.density(), layout.blocking_efficiency());
  }
  std::printf("\nwrote %zu SVG files to %s\n", gallery.size(), dir.c_str());
  return 0;
}
