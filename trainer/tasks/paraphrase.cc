#include "trainer/tasks/paraphrase.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace skillpack {
namespace {

// Eight templates per task; indices 3 and 7 are held out.
const std::map<std::string, std::vector<std::string>>& Templates() {
  static const auto* kTemplates = new std::map<std::string, std::vector<std::string>>{
      {"add",
       {"What is {a} plus {b}?", "Add {a} and {b}.", "Please compute {a} + {b}", "How much is {a} added to {b}?",
        "Calculate the sum of {a} and {b}.", "Can you add {a} to {b}?", "{a} plus {b} equals what?",
        "I need the total of {a} and {b}, please."}},
      {"reverse",
       {"Reverse the string {s}", "please reverse: {s}", "Can you reverse {s}?", "Write {s} backwards.",
        "Reverse the letters of {s}.", "What is {s} reversed?", "Spell {s} in reverse order",
        "Give me the word {s} from the last letter to the first."}},
      {"sort",
       {"Can you sort {s}?", "Sort the digits {s}", "please sort: {s}", "Put the digits of {s} in ascending order.",
        "Sort {s} from smallest to largest.", "Arrange {s} in increasing order", "What are the digits of {s} sorted?",
        "Order these digits from low to high: {s}"}},
      {"kv",
       {"Given {pairs}, what is {q}?", "If {pairs}, what is the value of {q}?", "Look up {q} in {pairs}.",
        "With {pairs}, tell me {q}.", "The values are {pairs}. What does {q} equal?",
        "Find the value of {q} where {pairs}", "Using {pairs}: {q} = ?",
        "Which digit is stored under {q} in {pairs}?"}},
      {"caesar",
       {"Shift {s} by {n} letters", "Apply a Caesar shift of {n} to {s}.", "Encode {s} with rot{n}",
        "Move every letter of {s} forward by {n}.", "Caesar cipher {s} with shift {n}",
        "Rotate the letters of {s} by {n}", "Encrypt {s} using a shift of {n}.",
        "What is {s} after shifting each letter {n} places?"}},
  };
  return *kTemplates;
}

// Training-only templates after the eight above (the router's phrasings are
// more varied with them). Written to avoid the held-out templates' wording:
// none says "backwards", "last letter", "ascending", "low to high",
// "total", "added to", "tell me", "stored under", "forward" or "places".
const std::map<std::string, std::vector<std::string>>& ExtraTemplates() {
  static const auto* kExtra = new std::map<std::string, std::vector<std::string>>{
      {"add",
       {"Sum {a} and {b}.", "What do you get when you combine {a} with {b}?", "{a} + {b} = ?", "Work out {a} plus {b}",
        "Find the result of adding {a} and {b}"}},
      {"reverse",
       {"Flip {s} around.", "Mirror the letters in {s}", "Read {s} right to left.", "Turn {s} around, please",
        "How does {s} look in the opposite direction?"}},
      {"sort",
       {"Sort these numbers: {s}", "Rearrange the digits {s} so they increase", "Rank the digits of {s} by size",
        "Smallest digit first, please: {s}", "Give me {s} in sorted order"}},
      {"kv",
       {"In {pairs}, what number goes with {q}?", "{pairs}. What is {q}?", "Return the value for key {q} from {pairs}",
        "Given the mapping {pairs}, look up {q}.", "Here are some assignments: {pairs}. Find {q}."}},
      {"caesar",
       {"Rotate each letter in {s} by {n}", "Cipher {s} with a shift of {n}",
        "Shift the letters of {s} up the alphabet by {n}", "Use rot{n} on {s}",
        "Encode {s} by moving letters {n} steps"}},
  };
  return *kExtra;
}

// General prompts: opener x topic; each held-out split's openers and topics
// are all different from the training split's and from each other's.
struct GeneralParts {
  std::vector<std::string> openers, topics;
};

// A held-out set kept out of ParaphraseTemplates(task): its templates per
// task and its general prompts' openers and topics. Each was written after
// the set before it had been scored, and committed before any router was
// scored on it; the first of them on 2026-12-04, after every committed router
// setting had been chosen by looking at the first held-out split's scores
// (bench/README, "A fresh held-out set"). Written as a user might ask, not to
// avoid other splits' words, but no template is another split's, and no
// opener's or topic's words are in another split's lists nor
// ExtraGeneral's (paraphrase_test checks both). No router trains on them.
struct SeparateSet {
  TemplateSplit split;
  const char* name;  // TemplateSplitName
  std::map<std::string, std::vector<std::string>> templates;
  GeneralParts general;
};

const std::vector<SeparateSet>& SeparateSets() {
  static const auto* kSets = new std::vector<SeparateSet>{
      // The second held-out set.
      {TemplateSplit::kFresh,
       "fresh",
       {
           {"add",
            {"What's {a} and {b} together?", "If I have {a} apples and get {b} more, how many do I have?",
             "Quick math: {a} + {b}", "Could you tell me what {a} plus {b} comes to?"}},
           {"reverse",
            {"Reverse the order of the characters in {s}", "{s} spelled backwards is?", "Turn {s} back to front.",
             "Could you write {s} starting from its end?"}},
           {"sort",
            {"Put {s} in order, smallest first.", "List the digits in {s} from lowest to highest.",
             "Could you arrange the digits {s} in order?", "Order the numbers in {s} for me."}},
           {"kv",
            {"From {pairs}, what's the value of {q}?", "{pairs}; so what is {q}?", "Given that {pairs}, find {q}.",
             "What number is {q} if {pairs}?"}},
           {"caesar",
            {"Shift every letter in {s} by {n}.", "Give {s} a Caesar shift of {n}",
             "Encode {s} with a Caesar cipher, key {n}.", "Move each letter in {s} {n} positions along the alphabet."}},
       },
       {{"How would you explain {t} to a friend?", "Write a limerick about {t}.",
         "What are some interesting questions about {t}?", "Give me a quick introduction to {t}.",
         "I'm writing a report on {t}. Where do I start?", "What's your opinion of {t}?"},
        {"the Great Wall of China", "penguins", "origami", "renewable energy", "the Renaissance", "submarines",
         "coral reefs", "crossword puzzles"}}},
      // The third held-out set.
      {TemplateSplit::kFresh2,
       "fresh2",
       {
           {"add",
            {"What do {a} and {b} add up to?", "{a} + {b}?", "Can you help me add up {a} and {b}?",
             "I spent {a} dollars and then {b} more. How much is that altogether?"}},
           {"reverse",
            {"How do you spell {s} backwards?", "Please write the letters of {s} in reverse.", "reverse {s}",
             "What would {s} look like read from right to left?"}},
           {"sort",
            {"Sort {s}, please.", "Can you put the digits of {s} in order from smallest to biggest?",
             "What do the digits of {s} look like when sorted?", "Rewrite {s} with its digits in increasing order."}},
           {"kv",
            {"What's {q} equal to, given {pairs}?", "{pairs}. Tell me the value of {q}, please.",
             "If I set {pairs}, what's {q}?", "What value does {q} have in {pairs}?"}},
           {"caesar",
            {"Can you apply rot{n} to {s}?", "Shift each letter of {s} by {n} in the alphabet.",
             "What's {s} in a Caesar cipher with a shift of {n}?", "I need {s} Caesar-shifted by {n}."}},
       },
       {{"What are some activities related to {t}?", "Do you have any tips on {t}?", "Write a song about {t}.",
         "How has {t} changed over the years?", "What's the best way to get into {t}?", "Make up a joke about {t}."},
        {"sunflowers", "lighthouses", "skateboarding", "the Silk Road", "octopuses", "thunderstorms",
         "hot air balloons", "the Byzantine Empire"}}},
      // The fourth held-out set.
      {TemplateSplit::kFresh3,
       "fresh3",
       {
           {"add",
            {"what's {a}+{b}", "Could you add {a} and {b} for me?",
             "My rent is {a} and my bills come to {b}. How much is that combined?", "Sum up {a} and {b}, please."}},
           {"reverse",
            {"what's {s} backwards?", "My password hint says it's {s} reversed. What's the password?",
             "Could you write out {s} in reverse order for me?",
             "I need the letters of {s} flipped so the last one comes first."}},
           {"sort",
            {"sort the digits in {s} pls", "Can you rearrange {s} so the digits go from smallest to largest?",
             "I have the digits {s}. What do they look like in ascending order?",
             "Arrange the numbers in {s} from least to greatest, please."}},
           {"kv",
            {"Given the variables {pairs}, what's the value of {q}?", "{pairs} -- so what does {q} hold?",
             "Please tell me what {q} is set to in {pairs}.",
             "I've got {pairs} written down. Can you read off {q} for me?"}},
           {"caesar",
            {"What does {s} become under a Caesar shift of {n}?", "can you caesar shift {s} by {n}",
             "I'm making a secret code for my kids. Shift each letter of {s} ahead by {n}. What's the coded word?",
             "Please encrypt {s} using rot{n}."}},
       },
       {{"Can you write a bedtime story about {t}?", "What are the biggest misconceptions about {t}?",
         "Help me prepare a five-minute talk on {t}.", "Recommend a good documentary about {t}.",
         "What's a little-known fact about {t}?", "Put together a short quiz about {t}."},
        {"glaciers", "the pyramids of Giza", "meditation", "hedgehogs", "the Apollo missions", "fireflies",
         "marathon running", "the northern lights"}}},
      // The fifth held-out set.
      {TemplateSplit::kFresh4,
       "fresh4",
       {
           {"add",
            {"How much do {a} and {b} make?", "hey what's {a} + {b} again",
             "I walked {a} steps yesterday and {b} today. What's my total for the two days?",
             "Can you work out {a} + {b} for me?"}},
           {"reverse",
            {"Can you spell {s} in reverse?", "What's {s} if you read it from the end?",
             "I'm making a puzzle and need {s} written backwards. Can you do that?", "Could I get {s} reversed?"}},
           {"sort",
            {"Could you sort the digits of {s} from lowest to highest?", "Put these digits in order for me: {s}",
             "What's {s} with its digits sorted smallest to largest?",
             "I'm checking my homework. What's {s} sorted in ascending order?"}},
           {"kv",
            {"If {pairs}, then what's {q}?", "Here's a list: {pairs}. What's the value for {q}?",
             "What's the number assigned to {q} in {pairs}?", "My notes say {pairs}. What did I write down for {q}?"}},
           {"caesar",
            {"Could you Caesar-encrypt {s} with a shift of {n}?", "Shift {s} by {n} positions in the alphabet, please.",
             "what's {s} in rot{n}",
             "For a scavenger hunt clue I want every letter in {s} moved forward {n} places. What does it come out "
             "as?"}},
       },
       {{"Explain {t} like I'm five.", "Write a tweet about {t}.", "What's some good trivia about {t}?",
         "Give me a reading list on {t}.", "What makes {t} so fascinating?", "Can you give me a timeline of {t}?"},
        {"the Eiffel Tower", "tornadoes", "sea turtles", "yoga", "the Vikings", "kites", "the Amazon River",
         "board games"}}},
      // The sixth held-out set.
      {TemplateSplit::kFresh5,
       "fresh5",
       {
           {"add",
            {"What's the sum of {a} and {b}?", "whats {a} plus {b}",
             "We sold {a} tickets on Friday and {b} on Saturday. How many tickets did we sell overall?",
             "Can you quickly add {a} and {b} for me? Thanks!"}},
           {"reverse",
            {"Can you reverse the word {s} for me?", "how would {s} read backwards",
             "I'm writing a secret note to a friend and want {s} written in reverse. What would that be?",
             "Reverse this for me please: {s}"}},
           {"sort",
            {"Sort {s} in ascending order, please.", "can u sort {s} smallest to biggest",
             "What do I get if I sort the digits in {s}?",
             "I've got these digits: {s}. Can you put them in increasing order for me?"}},
           {"kv",
            {"{pairs}. what's {q}", "Can you tell me what {q} is if {pairs}?",
             "My config file has {pairs}. What's {q} set to?", "Which value goes with {q} in {pairs}?"}},
           {"caesar",
            {"Caesar shift {s} by {n}, please.", "what is {s} with a caesar shift of {n}",
             "Can you encode {s} using a Caesar cipher with a shift of {n}?",
             "I'm making a code game for my class. If every letter in {s} moves {n} spots further along the alphabet, "
             "what do we get?"}},
       },
       {{"Can you write a riddle about {t}?", "Summarize {t} in a few bullet points.",
         "I'm visiting a museum exhibit on {t} next week. What should I look out for?",
         "Give me some conversation starters about {t}.", "Write a short dialogue between two people discussing {t}.",
         "Write a short speech about {t}."},
        {"the Taj Mahal", "owls", "sourdough", "the Titanic", "comets", "wolves", "Stonehenge", "ice hockey"}}},
      // The seventh held-out set.
      {TemplateSplit::kFresh6,
       "fresh6",
       {
           {"add",
            {"{a} plus {b} is how much?", "pls add {a} + {b}",
             "I had {a} followers last month and gained {b} more this month. How many followers do I have now?",
             "Would you mind telling me the sum of {a} and {b}?"}},
           {"reverse",
            {"Write {s} in reverse, please.", "reverse of {s}?",
             "For a word game I need {s} spelled back to front. What do I get?",
             "What's {s} if you flip the order of its letters?"}},
           {"sort",
            {"Could you order the digits of {s} from smallest to largest?", "digits of {s} sorted pls",
             "My locker combination is the digits {s} put in increasing order. What's the combination?",
             "Please arrange {s} so the digits go up."}},
           {"kv",
            {"If {pairs}, what's {q} worth?", "{pairs} -> {q}?",
             "I jotted down {pairs} during the meeting. What was {q} again?",
             "Look at {pairs} and tell me the value of {q}."}},
           {"caesar",
            {"Shift the letters in {s} forward by {n}.", "rot{n} {s} please",
             "My friend and I pass notes in a Caesar cipher with key {n}. How would I write {s}?",
             "What's the Caesar cipher of {s} with a shift of {n}?"}},
       },
       {{"Is there a good podcast about {t}?",
         "My nephew is obsessed with {t}. What should I get him for his birthday?", "Pitch me a movie plot about {t}.",
         "what's the deal with {t}", "Can you make me a study guide on {t}?",
         "Pretend you're a tour guide and walk me through {t}."},
        {"jellyfish", "the Statue of Liberty", "pottery", "the Wright brothers", "cheese", "the Loch Ness monster",
         "sloths", "surfing"}}},
      // The eighth held-out set.
      {TemplateSplit::kFresh7,
       "fresh7",
       {
           {"add",
            {"What does {a} + {b} come out to?", "{a} and {b} added together?",
             "I'm splitting a bill: my part is {a} and my friend's part is {b}. What's the whole bill?",
             "Please add these two numbers for me: {a} and {b}."}},
           {"reverse",
            {"What do you get when {s} is reversed?", "backwards version of {s}?",
             "My kid made up the word {s} and wants to hear it backwards. What is it?",
             "Please print {s} with its letters in reverse order."}},
           {"sort",
            {"Can you sort the digits {s} into increasing order?", "sort {s} lowest first",
             "The digits on my bike lock are {s}. If I sort them from smallest to biggest, what do I get?",
             "Please rearrange the digits of {s} in ascending order."}},
           {"kv",
            {"According to {pairs}, what does {q} equal?", "{pairs}, {q}=?",
             "In my spreadsheet {pairs}. What number is in cell {q}?",
             "Can you check {pairs} and let me know what {q} is?"}},
           {"caesar",
            {"Encrypt {s} with a Caesar shift of {n}, please.", "caesar {s} by {n}",
             "I'm making an escape room puzzle. What is {s} once every letter is pushed {n} letters later in the "
             "alphabet?",
             "Could you turn {s} into Caesar cipher text using a shift of {n}?"}},
       },
       {{"Come up with a catchy newspaper headline about {t}.", "What is {t} best known for?",
         "I'm putting together a scrapbook about {t} for my grandma. What should go in it?",
         "gimme a quick rundown on {t}", "Could you make some flashcards on {t} for me?",
         "Write some rap lyrics about {t}."},
        {"bamboo", "chameleons", "the Mona Lisa", "hurricanes", "tulips", "bagpipes", "Pompeii", "roller coasters"}}},
      // The ninth held-out set.
      {TemplateSplit::kFresh8,
       "fresh8",
       {
           {"add",
            {"How much is {a} plus {b}?", "{a}+{b} = ?",
             "My pedometer says {a} steps this morning and {b} more this afternoon. How many steps is that today?",
             "Would you total up {a} and {b} for me?"}},
           {"reverse",
            {"Can you write {s} backwards for me?", "{s} reversed pls",
             "For a word game I need {s} spelled from the last letter to the first. What is it?",
             "Reverse the order of the characters in {s}, please."}},
           {"sort",
            {"Put the digits of {s} in order from smallest to largest.", "{s} sorted ascending?",
             "My lottery ticket shows {s}. Could you list those digits from low to high?",
             "What do the digits {s} look like once they're sorted?"}},
           {"kv",
            {"Given {pairs}, what's the value of {q}?", "what's {q} if {pairs}",
             "My notes say {pairs}. Which value did I write down for {q}?", "Look up {q} in {pairs}, please."}},
           {"caesar",
            {"Shift each letter of {s} forward by {n}, Caesar cipher style.", "{s} caesar shift {n}",
             "My friend and I pass secret notes in a Caesar cipher. How would I write {s} with a shift of {n}?",
             "Can you apply a Caesar cipher with key {n} to {s}?"}},
       },
       {{"Write a sonnet about {t}.", "Could you write a lullaby about {t}?",
         "My daughter's class is doing a project on {t}. Any ideas for what to include?",
         "tell me something weird about {t}", "Draft a short newsletter blurb about {t}.",
         "Give me a few discussion questions about {t} for my book club."},
        {"geysers", "hummingbirds", "the Sahara", "sea otters", "koalas", "the Great Barrier Reef", "maple syrup",
         "redwoods"}}},
      // The tenth held-out set.
      {TemplateSplit::kFresh9,
       "fresh9",
       {
           {"add",
            {"What do you get if you add {a} and {b} together?", "{a} and {b} summed?",
             "I'm splitting a bill: my share was {a} and my roommate's was {b}. What's the combined amount?",
             "Quick math check: {a} + {b}"}},
           {"reverse",
            {"What does {s} look like spelled in reverse?", "flip {s}",
             "I'm making a mirror-writing puzzle for my students. Could you give me {s} with its letters in reverse "
             "order?",
             "Please turn {s} around so it reads right to left."}},
           {"sort",
            {"Arrange the digits in {s} from lowest to highest.", "sort these digits: {s}",
             "I copied the number {s} off a receipt. Can you rearrange its digits into increasing order?",
             "Could you order the digits of {s} smallest first?"}},
           {"kv",
            {"In {pairs}, what is {q} set to?", "{pairs}; {q}=?",
             "Here's a config snippet: {pairs}. I need to know what {q} maps to.",
             "From the pairs {pairs}, tell me the value paired with {q}."}},
           {"caesar",
            {"Encode {s} using a Caesar shift of {n}.", "caesar {n} on {s}",
             "I'm setting up a scavenger hunt and want the clues encrypted. What does {s} become with a Caesar cipher "
             "shifted by {n}?",
             "Could you rotate every letter in {s} by {n} positions in the alphabet?"}},
       },
       {{"I'm writing a travel blog post about {t}. Can you help me with an intro paragraph?",
         "Write a short children's picture book about {t}.", "what's the history behind {t}?",
         "Can you come up with a catchy slogan about {t}?",
         "I have a presentation at work on {t} tomorrow. What should my slides cover?",
         "Describe {t} in three sentences."},
        {"flamingos", "the Grand Canyon", "bonsai trees", "the Panama Canal", "rainbows", "Machu Picchu", "narwhals",
         "fireworks"}}},
      // The eleventh held-out set.
      {TemplateSplit::kFresh10,
       "fresh10",
       {
           {"add",
            {"What is the total when you add {a} to {b}?", "{a} + {b} is what",
             "I'm doing my budget. Groceries were {a} and gas was {b}. How much did I spend in all?",
             "Could you please add {a} and {b}?"}},
           {"reverse",
            {"What's {s} spelled backward?", "{s} backwards please",
             "I'm labeling a jar for a magic trick and need {s} written in reverse. What should I write?",
             "Can you give me the letters of {s} in the opposite order?"}},
           {"sort",
            {"Sort the digits of {s} in ascending order.", "{s} -> sorted?",
             "My teacher gave us the number {s} and asked us to put its digits from smallest to largest. What's the "
             "answer?",
             "Can you list the digits of {s} in order, lowest to highest?"}},
           {"kv",
            {"What's the value of {q} in {pairs}?", "{pairs}. {q}?",
             "I've got these settings in my script: {pairs}. What's {q} right now?",
             "Using the assignments {pairs}, what does {q} come out to?"}},
           {"caesar",
            {"Apply a Caesar cipher to {s} with a shift of {n}.", "rot{n}: {s}",
             "I'm writing a spy story and want a coded message. What is {s} after shifting every letter {n} places "
             "down "
             "the alphabet?",
             "Can you encrypt {s} by shifting each letter {n} places?"}},
       },
       {{"Can you write an Instagram caption about {t}?", "Help me prepare for a debate about {t}.",
         "Write a postcard to my grandpa about {t}.", "explain {t} in plain english",
         "I need an outline for an essay on {t}.", "Convince me that {t} is worth caring about."},
        {"tide pools", "the Hoover Dam", "platypuses", "the Sistine Chapel", "glassblowing", "axolotls",
         "cherry blossoms", "the Trans-Siberian Railway"}}},
      // The twelfth held-out set.
      {TemplateSplit::kFresh11,
       "fresh11",
       {
           {"add",
            {"What is {a} plus {b} altogether?", "add {a} and {b} real quick",
             "My score was {a} in the first round and {b} in the second. What's my total score?",
             "Can you help me figure out {a} + {b}?"}},
           {"reverse",
            {"How is {s} spelled in reverse?", "{s} but backwards",
             "I'm naming a character in my novel by reversing the word {s}. What would the name be?",
             "Could you write the letters of {s} from last to first?"}},
           {"sort",
            {"Could you sort the digits of {s} for me?", "sort {s} ascending",
             "I'm organizing a list of digits: {s}. Can you put them in order from smallest to largest?",
             "What's {s} when its digits are arranged from low to high?"}},
           {"kv",
            {"In {pairs}, what's the value of {q}?", "{pairs} so {q} is?",
             "My code sets {pairs}. What does {q} end up being?", "Can you tell me which number {q} has in {pairs}?"}},
           {"caesar",
            {"What is {s} with every letter shifted by {n}?", "rot{n} this: {s}",
             "I'm sending a secret message to my brother. Can you encode {s} with a Caesar cipher using a shift of "
             "{n}?",
             "Please shift the letters of {s} {n} places forward in the alphabet."}},
       },
       {{"Write a short email to my coworkers about {t}.", "What would make a good Halloween costume based on {t}?",
         "Can you suggest some craft projects inspired by {t}?",
         "I'm planning a weekend trip around {t}. What should I pack?", "Recommend a few novels that feature {t}.",
         "Give me an elevator pitch for {t}."},
        {"puffins", "the Golden Gate Bridge", "calligraphy", "hot springs", "manatees", "the Leaning Tower of Pisa",
         "lavender fields", "pumpkins"}}},
      // The thirteenth held-out set.
      {TemplateSplit::kFresh12,
       "fresh12",
       {
           {"add",
            {"Can you add {a} and {b} together for me?", "{a} plus {b}?",
             "I drove {a} miles on Monday and {b} miles on Tuesday. How far did I drive in total?",
             "What's the answer to {a} + {b}?"}},
           {"reverse",
            {"What is {s} written backwards?", "backwards: {s}",
             "I'm designing a logo and want the word {s} reversed. What would it look like?",
             "Could you reverse the letters in {s}?"}},
           {"sort",
            {"Please sort the digits in {s} from smallest to largest.", "{s} in order pls",
             "I wrote the digits {s} on a sticky note. Can you sort them from lowest to highest?",
             "What does {s} become if you sort its digits?"}},
           {"kv",
            {"What is {q} when {pairs}?", "{pairs} what's {q}",
             "My program defines {pairs}. What's the value of {q} at the end?", "Can you find {q} in {pairs}?"}},
           {"caesar",
            {"Shift {s} forward by {n} letters, please.", "caesar cipher {s} shift {n}",
             "My dad loves puzzles, so I want to send him {s} encrypted with a Caesar shift of {n}. What should I "
             "send?",
             "Can you rotate each letter of {s} by {n}?"}},
       },
       {{"Write a text message to my mom about {t}.",
         "What are some fun facts about {t} that I could bring up at dinner?",
         "I'm teaching a class on {t} next month. How should I structure it?",
         "Can you draft a Wikipedia-style summary of {t}?", "plan me a day out centered on {t}",
         "Give me a motivational quote about {t}."},
        {"the Colosseum", "beavers", "stained glass", "peacocks", "the Dead Sea", "Mount Rushmore", "jigsaw puzzles",
         "the Berlin Wall"}}},
  };
  return *kSets;
}

// The entry of `split` in SeparateSets(); null for kTrain and kHeldOut, the
// splits that index into ParaphraseTemplates(task).
const SeparateSet* FindSeparateSet(TemplateSplit split) {
  for (const SeparateSet& set : SeparateSets()) {
    if (set.split == split) return &set;
  }
  return nullptr;
}

// The templates of a held-out set kept out of ParaphraseTemplates(task);
// null for the splits that index into it.
const std::map<std::string, std::vector<std::string>>* SeparateTemplates(TemplateSplit split) {
  const SeparateSet* set = FindSeparateSet(split);
  return set == nullptr ? nullptr : &set->templates;
}

bool HeldOutTemplate(size_t index) { return index < kFirstExtraTemplate && index % 4 == 3; }

Status NoTemplatesError(absl::string_view task_name) {
  return absl::InvalidArgumentError(absl::StrCat("task '", task_name, "' has no paraphrase templates"));
}

// The templates of `split` with their indices: into ParaphraseTemplates(task)
// for kTrain (the extras only with `extra_templates`) and kHeldOut, into the
// split's own list for kFresh, kFresh2, kFresh3, kFresh4, kFresh5, kFresh6,
// kFresh7, kFresh8, kFresh9, kFresh10, kFresh11 and kFresh12.
StatusOr<std::vector<std::pair<int, std::string>>> IndexedTemplates(absl::string_view task_name, TemplateSplit split,
                                                                    bool extra_templates) {
  std::vector<std::pair<int, std::string>> out;
  if (const auto* separate = SeparateTemplates(split)) {
    auto list = separate->find(std::string(task_name));
    if (list == separate->end()) return NoTemplatesError(task_name);
    for (size_t i = 0; i < list->second.size(); ++i) out.emplace_back(static_cast<int>(i), list->second[i]);
    return out;
  }
  ASSIGN_OR_RETURN(std::vector<std::string> all, ParaphraseTemplates(task_name));
  for (size_t i = 0; i < all.size(); ++i) {
    if (!extra_templates && i >= kFirstExtraTemplate) continue;
    if (HeldOutTemplate(i) == (split == TemplateSplit::kHeldOut)) out.emplace_back(static_cast<int>(i), all[i]);
  }
  return out;
}

// The fields of a canonical prompt of `task` (which Solve accepts).
StatusOr<std::map<std::string, std::string>> Fields(const Task& task, absl::string_view prompt) {
  RETURN_IF_ERROR(task.Solve(prompt).status());
  const std::string name = task.name();
  std::map<std::string, std::string> f;
  absl::string_view body = prompt;
  if (name == "add") {
    absl::ConsumeSuffix(&body, "=");
    const size_t plus = body.find('+');
    f["a"] = std::string(body.substr(0, plus));
    f["b"] = std::string(body.substr(plus + 1));
  } else if (name == "reverse" || name == "sort") {
    absl::ConsumePrefix(&body, name == "reverse" ? "rev " : "sort ");
    absl::ConsumeSuffix(&body, "=");
    f["s"] = std::string(body);
  } else if (name == "kv") {
    // "a=3;b=5 b?": pairs before the space, the query letter after it.
    const size_t space = body.rfind(' ');
    f["pairs"] = absl::StrReplaceAll(body.substr(0, space), {{";", ", "}});
    f["q"] = std::string(body.substr(space + 1, 1));
  } else if (name == "caesar") {
    absl::ConsumePrefix(&body, "rot");
    absl::ConsumeSuffix(&body, "=");
    f["n"] = std::string(body.substr(0, 1));
    f["s"] = std::string(body.substr(2));
  } else {
    return NoTemplatesError(name);
  }
  return f;
}

const GeneralParts& General(TemplateSplit split) {
  static const auto* kTrain =
      new GeneralParts{{"Tell me about {t}.", "What do you know about {t}?", "Write a short poem about {t}.",
                        "Explain {t} to a child.", "Give me three facts about {t}.", "Why do people like {t}?",
                        "Describe {t} in one sentence.", "What is the history of {t}?"},
                       {"the weather today", "the capital of France", "the sea", "coffee", "the moon", "football",
                        "music", "trains", "gardening", "the internet", "cats", "chess"}};
  static const auto* kHeldOut =
      new GeneralParts{{"Could you summarise the main ideas behind {t}?", "I am curious how {t} works",
                        "Share a fun story involving {t}.", "Compose a haiku on {t}"},
                       {"volcanoes", "ancient Rome", "jazz", "electric cars", "honey bees", "mountain climbing"}};
  if (split == TemplateSplit::kTrain) return *kTrain;
  const SeparateSet* set = FindSeparateSet(split);
  return set == nullptr ? *kHeldOut : set->general;
}

// Training-only openers and topics beside kTrain's (GeneralPromptsWithParts'
// `extra`): more ways of asking about more things, so "none" is learnt from
// more than eight openers and twelve topics. Written without the held-out
// parts' words: none says "summarise", "ideas", "curious", "works", "share",
// "story", "involving", "compose", "haiku", or names a volcano, Rome, jazz, a
// car, a bee, honey, a mountain or climbing (a test checks the list).
const GeneralParts& ExtraGeneral() {
  static const auto* kExtra = new GeneralParts{
      {"Can you recommend a good book on {t}?", "List some common myths about {t}.",
       "What should a beginner know about {t}?", "Write a paragraph about {t}.",
       "I would like to learn more about {t}.", "Give me an overview of {t}", "What are the pros and cons of {t}?",
       "Plan a lesson on {t} for students.", "Is {t} important? Why?", "Draft a blog post about {t}",
       "Who are the famous experts on {t}?", "Suggest a good question to ask about {t}.",
       "My friend keeps talking about {t}. What is it?", "Compare {t} with something similar.",
       "Help me write an essay on {t}.", "What is surprising about {t}?"},
      {"dinosaurs",
       "the ocean floor",
       "bread baking",
       "photography",
       "the solar system",
       "birds",
       "rainforests",
       "the olympic games",
       "knitting",
       "bicycles",
       "the printing press",
       "tea",
       "deserts",
       "robots",
       "painting",
       "the human heart",
       "rivers",
       "pirates",
       "castles",
       "video games",
       "snow",
       "chocolate",
       "libraries",
       "tennis",
       "whales",
       "the stock market",
       "camping",
       "dogs",
       "poetry",
       "ballet",
       "space travel",
       "recycling"}};
  return *kExtra;
}

// A split's openers and topics, kTrain's with the extra ones when `extra`.
GeneralParts GeneralPartsOf(TemplateSplit split, bool extra) {
  GeneralParts g = General(split);
  if (extra && split == TemplateSplit::kTrain) {
    const GeneralParts& e = ExtraGeneral();
    g.openers.insert(g.openers.end(), e.openers.begin(), e.openers.end());
    g.topics.insert(g.topics.end(), e.topics.begin(), e.topics.end());
  }
  return g;
}

}  // namespace

const char* TemplateSplitName(TemplateSplit split) {
  if (split == TemplateSplit::kTrain) return "train";
  const SeparateSet* set = FindSeparateSet(split);
  return set == nullptr ? "held_out" : set->name;
}

std::string NormalizedPhrasing(absl::string_view text) {
  while (!text.empty() && (text.back() == '.' || text.back() == '?' || text.back() == '!' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  return absl::AsciiStrToLower(text);
}

StatusOr<std::vector<std::string>> ParaphraseTemplates(absl::string_view task_name) {
  auto it = Templates().find(std::string(task_name));
  if (it == Templates().end()) return NoTemplatesError(task_name);
  std::vector<std::string> all = it->second;
  auto extra = ExtraTemplates().find(std::string(task_name));
  if (extra != ExtraTemplates().end()) all.insert(all.end(), extra->second.begin(), extra->second.end());
  return all;
}

StatusOr<std::vector<std::string>> ParaphraseTemplates(absl::string_view task_name, TemplateSplit split) {
  ASSIGN_OR_RETURN(auto indexed, IndexedTemplates(task_name, split, true));
  std::vector<std::string> out;
  for (auto& [index, tmpl] : indexed) out.push_back(std::move(tmpl));
  return out;
}

StatusOr<std::string> Paraphrase(const Task& task, absl::string_view canonical_prompt, absl::string_view tmpl) {
  ASSIGN_OR_RETURN(auto fields, Fields(task, canonical_prompt));
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] != '{') {
      out.push_back(tmpl[i++]);
      continue;
    }
    const size_t close = tmpl.find('}', i);
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("template \"", tmpl, "\": unclosed '{'"));
    }
    const std::string field(tmpl.substr(i + 1, close - i - 1));
    auto f = fields.find(field);
    if (f == fields.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("template \"", tmpl, "\": task '", task.name(), "' has no field {", field, "}"));
    }
    out += f->second;
    i = close + 1;
  }
  return out;
}

StatusOr<std::vector<ParaphrasedExample>> GenerateParaphrases(const Task& task, TaskSplit problems,
                                                              TemplateSplit templates, int64_t n, uint64_t seed,
                                                              bool extra_templates) {
  ASSIGN_OR_RETURN(auto indexed, IndexedTemplates(task.name(), templates, extra_templates));
  ASSIGN_OR_RETURN(std::vector<TaskExample> examples, GenerateTaskExamples(task, problems, n, seed, false));
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<ParaphrasedExample> out;
  for (TaskExample& e : examples) {
    ParaphrasedExample p;
    const auto& [index, tmpl] = indexed[rng() % indexed.size()];
    p.template_index = index;
    ASSIGN_OR_RETURN(p.text, Paraphrase(task, e.prompt, tmpl));
    p.canonical = std::move(e);
    out.push_back(std::move(p));
  }
  return out;
}

int64_t NumGeneralPrompts(TemplateSplit split, bool extra) {
  const GeneralParts g = GeneralPartsOf(split, extra);
  return static_cast<int64_t>(g.openers.size() * g.topics.size());
}

std::vector<std::string> GeneralTopics(TemplateSplit split, bool extra) { return GeneralPartsOf(split, extra).topics; }

std::vector<GeneralPrompt> GeneralPromptsWithParts(TemplateSplit split, int64_t n, uint64_t seed, bool extra) {
  const GeneralParts g = GeneralPartsOf(split, extra);
  std::vector<GeneralPrompt> all;
  for (size_t o = 0; o < g.openers.size(); ++o) {
    for (size_t t = 0; t < g.topics.size(); ++t) {
      all.push_back(
          {absl::StrReplaceAll(g.openers[o], {{"{t}", g.topics[t]}}), static_cast<int>(o), static_cast<int>(t)});
    }
  }
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(std::clamp<int64_t>(n, 0, static_cast<int64_t>(all.size()))));
  return all;
}

std::vector<std::string> GeneralPrompts(TemplateSplit split, int64_t n, uint64_t seed, bool extra) {
  std::vector<std::string> out;
  for (GeneralPrompt& p : GeneralPromptsWithParts(split, n, seed, extra)) out.push_back(std::move(p.text));
  return out;
}

}  // namespace skillpack
